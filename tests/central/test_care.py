"""The ward task list: consent, ranking of alarms and NEWS2, and its audit row."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from central_testkit import DEVICE_ID, Demo, bearer, emergency, numerics

from central.services import Services
from central.storage import store_batch
from protocol.messages import (
    Emergency,
    Measurement,
    VitalsNumerics,
    decode_device_message,
    encode,
)

PATH = "/care/ward"


async def _store(services: Services, *frames: str) -> None:
    messages = [decode_device_message(frame) for frame in frames]
    await store_batch(services.pool, DEVICE_ID, messages)


def _alarm(
    seq: int, alarm_id: str, priority: str, started_at: datetime, state: str = "raised"
) -> str:
    message = Emergency(
        device_id=DEVICE_ID,
        seq=seq,
        sent_at=datetime.now(UTC),
        alarm_id=alarm_id,
        kind="bradycardia",
        priority=priority,
        state=state,
        started_at=started_at,
        evidence="heart rate 38 /min for 10 s",
    )
    return encode(message).decode()


def _full_vitals(seq: int, measured_at: datetime | None = None) -> str:
    at = measured_at or datetime.now(UTC)
    values = [
        ("MDC_RESP_RATE", 22.0, "/min"),  # 2
        ("MDC_PULS_OXIM_SAT_O2", 95.0, "%"),  # 1
        ("MDC_PRESS_BLD_NONINV_SYS", 105.0, "mm[Hg]"),  # 1
        ("MDC_PULS_OXIM_PULS_RATE", 135.0, "/min"),  # 3
        ("MDC_TEMP_BODY", 37.0, "Cel"),  # 0
    ]
    message = VitalsNumerics(
        device_id=DEVICE_ID,
        seq=seq,
        sent_at=at,
        measured_at=at,
        measurements=[Measurement(code=c, value=v, unit=u) for c, v, u in values],
    )
    return encode(message).decode()


async def _ward(client: httpx.AsyncClient, token: str) -> dict:
    response = await client.get(PATH, headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()


def _of_kind(body: dict, kind: str) -> list[dict]:
    return [item for item in body["items"] if item["kind"] == kind]


async def test_assigned_nurse_sees_alarm_first(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, numerics(1), emergency(2))
    body = await _ward(client, demo.ana_token)
    kinds = [(item["rank"], item["kind"]) for item in body["items"]]
    assert kinds == [(1, "alarm"), (2, "news2"), (3, "observations_due")]
    alarm = body["items"][0]
    assert alarm["patient_id"] == demo.patient_id
    assert alarm["bed_label"] == "Bed 1"
    assert alarm["alarm"]["kind"] == "tachycardia"
    assert "high-priority" in alarm["reason"]
    assert "active alarms come first" in alarm["reason"]


async def test_news2_parts_and_missing(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    # Heart rate 72 scores 0 and SpO2 97 scores 0; the rest is missing.
    await _store(services, numerics(1))
    body = await _ward(client, demo.ana_token)
    (item,) = _of_kind(body, "news2")
    news2 = item["news2"]
    assert news2["total"] == 0
    assert news2["complete"] is False
    assert news2["parts"]["pulse"] == {"value": 72.0, "band": "51-90", "score": 0}
    assert news2["parts"]["spo2"]["score"] == 0
    missing = {entry["parameter"]: entry["reason"] for entry in news2["missing"]}
    assert set(missing) == {
        "respiration_rate",
        "air_or_oxygen",
        "systolic_bp",
        "consciousness",
        "temperature",
    }
    assert "last 12 h" in missing["temperature"]
    assert "bedside devices" in missing["consciousness"]
    assert "at least" in item["reason"]


async def test_news2_from_all_device_vitals(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    # 2 + 1 + 1 + 3 + 0 = 7: high risk even without oxygen and consciousness.
    await _store(services, _full_vitals(1))
    body = await _ward(client, demo.ana_token)
    news2 = body["items"][0]["news2"]
    assert news2["total"] == 7
    assert news2["risk"] == "high"
    assert news2["parts"]["pulse"]["score"] == 3
    assert "3 in pulse" in body["items"][0]["reason"]


async def test_newer_pulse_source_wins(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    earlier = datetime.now(UTC) - timedelta(minutes=5)
    await _store(services, _full_vitals(1, earlier), numerics(2, heart_rate=80.0))
    body = await _ward(client, demo.ana_token)
    assert body["items"][0]["news2"]["parts"]["pulse"]["value"] == 80.0


async def test_stale_vitals_missing(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    old = datetime.now(UTC) - timedelta(hours=13)
    await _store(services, _full_vitals(1, old))
    body = await _ward(client, demo.ana_token)
    (item,) = _of_kind(body, "news2")
    assert item["news2"]["parts"] == {}
    assert "cannot be scored" in item["reason"]


async def test_alarms_by_priority_then_age(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    now = datetime.now(UTC)
    await _store(
        services,
        _alarm(1, "low-old", "low", now - timedelta(minutes=30)),
        _alarm(2, "high-new", "high", now - timedelta(minutes=1)),
        _alarm(3, "high-old", "high", now - timedelta(minutes=10)),
        _alarm(4, "medium", "medium", now - timedelta(minutes=20)),
    )
    body = await _ward(client, demo.ana_token)
    alarm_ids = [i["alarm"]["alarm_id"] for i in body["items"] if i["kind"] == "alarm"]
    assert alarm_ids == ["high-old", "high-new", "medium", "low-old"]
    assert "10 min ago" in body["items"][0]["reason"]


async def test_cleared_alarm_not_listed(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, emergency(1), emergency(2, state="cleared"))
    body = await _ward(client, demo.ana_token)
    assert _of_kind(body, "alarm") == []


async def test_unassigned_nurse_sees_nothing(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, numerics(1), emergency(2))
    body = await _ward(client, demo.ben_token)
    assert body["items"] == []
    assert body["patients"] == []
    assert demo.patient_id not in str(body)


async def test_ward_read_audited(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, emergency(1))
    await _ward(client, demo.ana_token)
    await _ward(client, demo.ben_token)
    rows = await services.pool.fetch(
        "SELECT actor_id, outcome, detail FROM audit_log "
        "WHERE action = 'care.ward.read' ORDER BY id"
    )
    assert [row["actor_id"] for row in rows] == [str(demo.ana_id), str(demo.ben_id)]
    assert rows[0]["outcome"] == "ok"
    assert rows[0]["detail"] == {"patient_ids": ["P-0001"], "active_alarms": 1}
    assert rows[1]["detail"] == {"patient_ids": [], "active_alarms": 0}


async def test_ward_requires_token(client: httpx.AsyncClient, demo: Demo) -> None:
    response = await client.get(PATH)
    assert response.status_code == 401
