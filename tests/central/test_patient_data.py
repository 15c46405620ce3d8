"""The history timeline (kinds, cursor pages, acknowledgements) and averaged vitals."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from central_testkit import DEVICE_ID, Demo, bearer, emergency, numerics

from central.audit import Actor
from central.services import Services
from central.storage import store_batch
from protocol.messages import (
    DataGap,
    DeviceHello,
    Emergency,
    decode_device_message,
    encode,
)

BASE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
HISTORY = "/patients/P-0001/history"
VITALS = "/patients/P-0001/vitals"
RANGE = {
    "since": BASE.isoformat(),
    "until": (BASE + timedelta(minutes=5)).isoformat(),
}


async def _store(services: Services, *frames: str) -> None:
    messages = [decode_device_message(frame) for frame in frames]
    await store_batch(services.pool, DEVICE_ID, messages)


def _hello(seq: int, at: datetime) -> str:
    message = DeviceHello(
        device_id=DEVICE_ID, seq=seq, sent_at=at, model="sim", firmware="1.0"
    )
    return encode(message).decode()


def _gap(seq: int, first_at: datetime) -> str:
    message = DataGap(
        device_id=DEVICE_ID,
        seq=seq,
        sent_at=first_at,
        reason="buffer_full",
        lead="II",
        first_sample_index=1000,
        sample_count=2500,
        first_at=first_at,
        last_at=first_at + timedelta(seconds=10),
        messages_dropped=20,
    )
    return encode(message).decode()


def _technical(seq: int, at: datetime) -> str:
    message = Emergency(
        device_id=DEVICE_ID,
        seq=seq,
        sent_at=at,
        alarm_id="leads-off-1",
        kind="leads_off",
        priority="medium",
        category="technical",
        state="raised",
        started_at=at,
        evidence="electrode contact lost",
    )
    return encode(message).decode()


async def _timeline(services: Services) -> None:
    """Store one of every kind of entry, two of them at the same time as BASE."""
    await _store(
        services,
        _hello(1, BASE),
        numerics(2, 60.0, measured_at=BASE),
        numerics(3, 80.0, measured_at=BASE + timedelta(seconds=30)),
        numerics(4, 100.0, measured_at=BASE + timedelta(minutes=1)),
        _gap(5, BASE + timedelta(seconds=100)),
        _technical(6, BASE + timedelta(seconds=110)),
    )
    await _store(services, emergency(7))
    await services.pool.execute(
        "UPDATE device_messages SET device_time = $1 WHERE seq = 7",
        BASE + timedelta(seconds=90),
    )
    await services.pool.execute(
        """
        INSERT INTO manual_observations (patient_id, user_id, recorded_by,
            observed_at, on_oxygen, consciousness)
        SELECT 'P-0001', id, 'Ana', $1, true, 'A' FROM users
        WHERE username = 'nurse.ana'
        """,
        BASE + timedelta(seconds=30),
    )


async def _get(
    client: httpx.AsyncClient, demo: Demo, path: str, params: dict[str, str]
) -> dict:
    response = await client.get(path, params=params, headers=bearer(demo.ana_token))
    assert response.status_code == 200, response.text
    return response.json()


def _summary(entry: dict) -> tuple[str, str, str]:
    detail = entry.get("event") or entry.get("alarm_kind") or ""
    return (entry["kind"], entry["at"], detail)


async def test_history_every_kind_in_order(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _timeline(services)
    body = await _get(client, demo, HISTORY, RANGE)
    at = [BASE + timedelta(seconds=s) for s in (0, 30, 60, 90, 100, 110)]
    assert [_summary(entry) for entry in body["entries"]] == [
        ("vitals", at[0].isoformat(), ""),
        ("device", at[0].isoformat(), "connected"),
        ("observation", at[1].isoformat(), ""),
        ("vitals", at[2].isoformat(), ""),
        ("alarm", at[3].isoformat(), "tachycardia"),
        ("gap", at[4].isoformat(), ""),
        ("device", at[5].isoformat(), "technical_alarm"),
    ]
    gap = body["entries"][5]
    assert gap["until"] == (at[4] + timedelta(seconds=10)).isoformat()
    assert gap["messages_dropped"] == 20
    first_minute = body["entries"][0]["vitals"]["MDC_ECG_HEART_RATE"]
    assert first_minute == {
        "unit": "/min", "min": 60.0, "max": 80.0, "mean": 70.0, "count": 2
    }
    assert body["next_cursor"] is None
    assert body["next"] is None


async def test_history_kinds_filter(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _timeline(services)
    body = await _get(client, demo, HISTORY, {**RANGE, "kinds": "gap,device"})
    assert body["kinds"] == ["device", "gap"]
    assert [entry["kind"] for entry in body["entries"]] == ["device", "gap", "device"]


async def test_history_time_range_filter(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _timeline(services)
    params = {
        "since": (BASE + timedelta(seconds=95)).isoformat(),
        "until": (BASE + timedelta(seconds=105)).isoformat(),
    }
    body = await _get(client, demo, HISTORY, params)
    assert [entry["kind"] for entry in body["entries"]] == ["gap"]


async def test_history_cursor_walk_matches_one_page(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _timeline(services)
    whole = (await _get(client, demo, HISTORY, RANGE))["entries"]
    walked: list[dict] = []
    params = {**RANGE, "limit": "2"}
    pages = 0
    while True:
        body = await _get(client, demo, HISTORY, params)
        walked += body["entries"]
        pages += 1
        if body["next_cursor"] is None:
            break
        assert len(body["entries"]) == 2
        params = {**RANGE, "limit": "2", "cursor": body["next_cursor"]}
    assert walked == whole
    assert pages == 4


async def test_history_next_link(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _timeline(services)
    first = await _get(client, demo, HISTORY, {**RANGE, "limit": "1"})
    assert first["next"].startswith(HISTORY + "?")
    response = await client.get(first["next"], headers=bearer(demo.ana_token))
    second = response.json()
    assert [_summary(entry) for entry in second["entries"]] == [
        ("device", BASE.isoformat(), "connected")
    ]


async def test_history_alarm_with_acknowledgement(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _timeline(services)
    response = await client.post(
        "/patients/P-0001/alarms/alarm-1/acknowledge", headers=bearer(demo.ana_token)
    )
    assert response.status_code == 202
    body = await _get(client, demo, HISTORY, {**RANGE, "kinds": "alarm"})
    (alarm,) = body["entries"]
    assert [ack["by"] for ack in alarm["acknowledgements"]] == ["Ana"]
    assert alarm["escalation"] is None


async def test_history_read_audited(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _get(client, demo, HISTORY, {**RANGE, "kinds": "vitals"})
    detail = await services.pool.fetchval(
        "SELECT detail FROM audit_log WHERE action = 'history.read'"
    )
    assert detail["kinds"] == ["vitals"]
    assert detail["since"] == BASE.isoformat()


HISTORY_BAD_PARAMETERS = [
        ({"kinds": "vitals,bogus"}, "kinds: unknown kind 'bogus'"),
        ({"kinds": ","}, "kinds: unknown kind ','"),
        ({"cursor": "not-a-cursor"}, "cursor: invalid"),
        ({"interval_s": "0"}, "interval_s: expected 1 to 86400, got 0"),
        ({"limit": "5000"}, "limit: expected 1 to 1000, got 5000"),
        ({"since": "noon"}, "since: expected an ISO 8601 time"),
        ({"from": "2030-01-01T00:00:00Z", "since": "2030-01-01T00:00:00Z"},
         "from: give either from or since"),
]


async def test_history_bad_parameters_400(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    for params, words in HISTORY_BAD_PARAMETERS:
        response = await client.get(
            HISTORY, params=params, headers=bearer(demo.ana_token)
        )
        assert response.status_code == 400, params
        assert words in response.json()["error"], params


async def test_vitals_long_range_averaged(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(
        services,
        *(
            numerics(seq, 60.0 + seq, measured_at=BASE + timedelta(minutes=10 * seq))
            for seq in range(18)
        ),
    )
    params = {
        "since": BASE.isoformat(),
        "until": (BASE + timedelta(hours=3)).isoformat(),
        "code": "MDC_ECG_HEART_RATE",
        "resolution": "3600",
    }
    body = await _get(client, demo, VITALS, params)
    assert body["resolution"] == {"mode": "mean", "bucket_s": 3600}
    assert [(b["mean"], b["min"], b["max"], b["count"]) for b in body["buckets"]] == [
        (62.5, 60.0, 65.0, 6),
        (68.5, 66.0, 71.0, 6),
        (74.5, 72.0, 77.0, 6),
    ]
    params["resolution"] = "auto"
    automatic = await _get(client, demo, VITALS, params)
    # Three hours in at most 500 buckets: 22 s each.
    assert automatic["resolution"] == {"mode": "mean", "bucket_s": 22}
    assert len(automatic["buckets"]) == 18


async def test_vitals_short_range_raw(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, numerics(1, 70.0, measured_at=BASE))
    body = await _get(client, demo, VITALS, RANGE)
    assert body["resolution"] == {"mode": "raw"}
    assert len(body["measurements"]) == 2


async def test_vitals_bad_resolution_400(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    for value in ("fast", "0", "100000"):
        response = await client.get(
            VITALS, params={"resolution": value}, headers=bearer(demo.ana_token)
        )
        assert response.status_code == 400, value
        assert "resolution: expected raw, auto or a bucket length" in response.text


async def test_history_device_disconnect(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    # Central audits a closed device connection without a patient; the timeline
    # gives it to the patient the device last sent data for.
    now = datetime.now(UTC)
    await _store(services, _hello(1, now - timedelta(seconds=5)))
    await services.audit.record(
        services.pool, Actor.device(DEVICE_ID), "device.disconnect"
    )
    params = {
        "since": (now - timedelta(minutes=1)).isoformat(),
        "until": (now + timedelta(minutes=1)).isoformat(),
        "kinds": "device",
    }
    body = await _get(client, demo, HISTORY, params)
    events = [entry["event"] for entry in body["entries"]]
    assert events == ["connected", "disconnected"]
