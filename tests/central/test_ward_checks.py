"""Ward list items beyond alarms and NEWS2, and the automated trend watchers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from central_testkit import DEVICE_ID, Demo, bearer, emergency
from test_care import _alarm, _full_vitals

from central.services import Services
from central.storage import store_batch
from protocol.messages import (
    Measurement,
    VitalsNumerics,
    decode_device_message,
    encode,
)

UNITS = {
    "MDC_RESP_RATE": "/min",
    "MDC_PULS_OXIM_SAT_O2": "%",
    "MDC_PRESS_BLD_NONINV_SYS": "mm[Hg]",
    "MDC_PULS_OXIM_PULS_RATE": "/min",
    "MDC_TEMP_BODY": "Cel",
}
NORMAL = {
    "MDC_RESP_RATE": 16.0,
    "MDC_PULS_OXIM_SAT_O2": 97.0,
    "MDC_PRESS_BLD_NONINV_SYS": 120.0,
    "MDC_PULS_OXIM_PULS_RATE": 80.0,
    "MDC_TEMP_BODY": 37.0,
}


def _vitals(seq: int, at: datetime, values: dict[str, float]) -> str:
    message = VitalsNumerics(
        device_id=DEVICE_ID,
        seq=seq,
        sent_at=at,
        measured_at=at,
        measurements=[
            Measurement(code=code, value=value, unit=UNITS[code])
            for code, value in values.items()
        ],
    )
    return encode(message).decode()


async def _store(services: Services, *frames: str) -> None:
    messages = [decode_device_message(frame) for frame in frames]
    await store_batch(services.pool, DEVICE_ID, messages)


async def _items(client: httpx.AsyncClient, demo: Demo, kind: str) -> list[dict]:
    response = await client.get("/care/ward", headers=bearer(demo.ana_token))
    assert response.status_code == 200, response.text
    return [item for item in response.json()["items"] if item["kind"] == kind]


def _enable_ai(services: Services, enabled: bool) -> None:
    services.settings = services.settings.replace(ai_agents_enabled=enabled)


async def test_observations_due_without_manual_parts(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, _full_vitals(1))
    (item,) = await _items(client, demo, "observations_due")
    due = item["observations_due"]
    # NEWS2 7 is high risk, which calls for observations at least hourly.
    assert due["interval_s"] == 3600
    assert due["stale_parameters"] == ["air_or_oxygen", "consciousness"]
    assert due["last_full_set_at"] is None
    assert "at least every 1 h" in item["reason"]


async def test_no_observations_due_after_full_set(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, _full_vitals(1))
    response = await client.post(
        f"/patients/{demo.patient_id}/observations",
        json={"on_oxygen": False, "consciousness": "A"},
        headers=bearer(demo.ana_token),
    )
    assert response.status_code == 201
    assert await _items(client, demo, "observations_due") == []


async def test_observations_due_by_score_interval(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    # Device values of 2 h ago are recent enough for NEWS2 but older than the hourly
    # interval that a score of 7 requires.
    two_hours_ago = datetime.now(UTC) - timedelta(hours=2)
    await _store(services, _full_vitals(1, two_hours_ago))
    await client.post(
        f"/patients/{demo.patient_id}/observations",
        json={"on_oxygen": False, "consciousness": "A"},
        headers=bearer(demo.ana_token),
    )
    (item,) = await _items(client, demo, "observations_due")
    assert "pulse" in item["observations_due"]["stale_parameters"]
    assert "consciousness" not in item["observations_due"]["stale_parameters"]
    assert "last full observation set 2 h 0 min ago" in item["reason"]


async def test_cleared_unacknowledged_alarm_listed(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, emergency(1), emergency(2, state="cleared"))
    (item,) = await _items(client, demo, "unacknowledged_alarm")
    assert item["alarm"]["alarm_id"] == "alarm-1"
    assert "cleared before anyone acknowledged it" in item["reason"]


async def test_acknowledged_then_cleared_not_listed(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, emergency(1))
    await client.post(
        f"/patients/{demo.patient_id}/alarms/alarm-1/acknowledge",
        headers=bearer(demo.ana_token),
    )
    await _store(services, emergency(2, state="cleared"))
    assert await _items(client, demo, "unacknowledged_alarm") == []


async def test_device_never_connected(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    (item,) = await _items(client, demo, "device")
    assert item["device"]["device_id"] == DEVICE_ID
    assert item["device"]["silent"] is True
    assert "has never connected" in item["reason"]


async def test_device_silent_and_technical_alarm(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    now = datetime.now(UTC)
    technical = _alarm(1, "leads-off-1", "medium", now).replace(
        '"physiological"', '"technical"'
    )
    await _store(services, technical)
    (item,) = await _items(client, demo, "device")
    assert item["device"]["silent"] is False
    assert item["device"]["technical_alarms"] == ["bradycardia"]
    assert item["device"]["battery_low"] is False
    await services.pool.execute("UPDATE alarms SET kind = 'battery_low'")
    await services.pool.execute(
        "UPDATE devices SET last_seen_at = $1", now - timedelta(minutes=5)
    )
    (item,) = await _items(client, demo, "device")
    assert item["device"]["technical_alarms"] == ["battery_low"]
    assert item["device"]["battery_low"] is True
    assert "not heard from for 5 min" in item["reason"]


async def _rising_news2(services: Services) -> None:
    now = datetime.now(UTC)
    await _store(services, _vitals(1, now - timedelta(minutes=60), NORMAL))
    await _store(services, _full_vitals(2, now))


async def test_ai_off_adds_nothing(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _rising_news2(services)
    response = await client.get("/care/ward", headers=bearer(demo.ana_token))
    body = response.json()
    assert body["ai_agents"] is False
    assert [item for item in body["items"] if item.get("automated")] == []


async def test_ai_on_flags_rising_news2(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    _enable_ai(services, True)
    await _rising_news2(services)
    (item,) = await _items(client, demo, "trend")
    assert item["automated"] is True
    assert item["watcher"] == "news2_rising"
    assert item["trend"]["from"] == 0
    assert item["trend"]["to"] == 7
    assert item["trend"]["within_s"] == 3600
    assert item["reason"].startswith("automated (rule-based trend watcher)")
    kinds = [i["kind"] for i in (await _ward_items(client, demo))]
    assert kinds.index("trend") == kinds.index("news2") + 1


async def _ward_items(client: httpx.AsyncClient, demo: Demo) -> list[dict]:
    response = await client.get("/care/ward", headers=bearer(demo.ana_token))
    return response.json()["items"]


async def test_ai_on_flags_falling_spo2(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    _enable_ai(services, True)
    now = datetime.now(UTC)
    frames = [
        _vitals(
            minute,
            now - timedelta(minutes=29 - minute),
            {"MDC_PULS_OXIM_SAT_O2": 98.0 - minute * 0.25},
        )
        for minute in range(30)
    ]
    await _store(services, *frames)
    (item,) = await _items(client, demo, "trend")
    assert item["watcher"] == "spo2_falling"
    assert item["trend"]["drop"] >= 3.0
    assert item["trend"]["slope_per_10_min"] < 0
    assert "SpO2 is trending down" in item["reason"]


async def test_ai_on_steady_patient_no_task(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    _enable_ai(services, True)
    now = datetime.now(UTC)
    frames = [
        _vitals(minute, now - timedelta(minutes=59 - minute), NORMAL)
        for minute in range(60)
    ]
    await _store(services, *frames)
    assert await _items(client, demo, "trend") == []
