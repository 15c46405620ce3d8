"""Device ingest over a real WebSocket: authentication, idempotency, rejection."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from central_testkit import (
    DEVICE_ID,
    Demo,
    LiveServer,
    connect_device,
    emergency,
    numerics,
    receive_json,
    waveform,
    with_field,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus

from central.services import Services
from central.storage import store_batch
from protocol.messages import DataGap, decode_device_message


async def _count(services: Services, table: str) -> int:
    return await services.pool.fetchval(f"SELECT count(*) FROM {table}")


async def _audit(services: Services, action: str) -> list[dict]:
    rows = await services.pool.fetch(
        "SELECT actor_kind, actor_id, outcome, detail FROM audit_log "
        "WHERE action = $1 ORDER BY id",
        action,
    )
    return [dict(row) for row in rows]


async def _wait_for_audit(services: Services, action: str) -> list[dict]:
    # The server audits a disconnect after the client has already closed.
    for _ in range(200):
        rows = await _audit(services, action)
        if rows:
            return rows
        await asyncio.sleep(0.01)
    raise AssertionError(f"no audit row for {action}")


async def test_duplicate_stored_once_acked_twice(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    frame = numerics(7)
    async with connect_device(live_server, demo) as device:
        await device.send(frame)
        first = await receive_json(device)
        await device.send(frame)
        second = await receive_json(device)
    assert first == {"type": "ack", "v": 1, "seqs": [7]}
    assert second == {"type": "ack", "v": 1, "seqs": [7]}
    assert await _count(services, "device_messages") == 1
    assert await _count(services, "vitals") == 2
    assert services.counters.get("ingest.stored") == 1
    assert services.counters.get("ingest.duplicates") == 1


async def test_duplicate_across_connections(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    for _ in range(2):
        async with connect_device(live_server, demo) as device:
            await device.send(waveform(3))
            assert (await receive_json(device))["seqs"] == [3]
    assert await _count(services, "waveform_chunks") == 1


async def test_every_kind_stored_with_patient(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    async with connect_device(live_server, demo) as device:
        for frame in (numerics(1), waveform(2), emergency(3)):
            await device.send(frame)
            await receive_json(device)
    rows = await services.pool.fetch(
        "SELECT seq, type, patient_id FROM device_messages ORDER BY seq"
    )
    assert [(r["seq"], r["type"], r["patient_id"]) for r in rows] == [
        (1, "vitals.numerics", "P-0001"),
        (2, "vitals.waveform", "P-0001"),
        (3, "patient.emergency", "P-0001"),
    ]
    samples = await services.pool.fetchval("SELECT samples FROM waveform_chunks")
    assert len(samples) == 250
    alarm = await services.pool.fetchrow("SELECT kind, priority, state FROM alarms")
    assert tuple(alarm) == ("tachycardia", "high", "raised")
    last_seen = await services.pool.fetchval(
        "SELECT last_seen_at FROM devices WHERE id = $1", DEVICE_ID
    )
    assert last_seen is not None


async def test_malformed_rejected_then_good_stored(
    live_server: LiveServer,
    demo: Demo,
    services: Services,
    caplog: pytest.LogCaptureFixture,
) -> None:
    bad_unit = numerics(10).replace('"unit":"/min"', '"unit":"bpm"')
    with caplog.at_level(logging.WARNING, logger="central.ingest"):
        async with connect_device(live_server, demo) as device:
            await device.send(bad_unit)
            rejected = await receive_json(device)
            await device.send(numerics(11))
            ack = await receive_json(device)
    assert rejected["type"] == "rejected"
    assert rejected["seq"] == 10
    assert rejected["field"] == "measurements[0].unit"
    assert "'/min'" in rejected["problem"]
    assert ack["seqs"] == [11]
    seqs = await services.pool.fetch("SELECT seq FROM device_messages")
    assert [row["seq"] for row in seqs] == [11]
    assert services.counters.get("ingest.rejected.measurements[].unit") == 1
    assert f"from device {DEVICE_ID}" in caplog.text


@pytest.mark.parametrize(
    ("frame", "seq", "field"),
    [
        ("{not json", None, "message"),
        (with_field(numerics(5), seq="five"), None, "seq"),
        (with_field(numerics(5), type="vitals.unknown"), 5, "type"),
        (with_field(numerics(5), extra=1), 5, "extra"),
        (with_field(numerics(5), device_id="monitor-2"), 5, "device_id"),
        (with_field(numerics(5), v=2), 5, "v"),
    ],
)
async def test_rejection_names_field(
    live_server: LiveServer, demo: Demo, frame: str, seq: int | None, field: str
) -> None:
    async with connect_device(live_server, demo) as device:
        await device.send(frame)
        rejected = await receive_json(device)
    assert rejected["type"] == "rejected"
    assert rejected["seq"] == seq
    assert rejected["field"] == field
    assert rejected["problem"]


async def test_binary_frame_rejected(live_server: LiveServer, demo: Demo) -> None:
    async with connect_device(live_server, demo) as device:
        await device.send(numerics(1).encode())
        rejected = await receive_json(device)
    assert rejected["field"] == "message"
    assert "binary" in rejected["problem"]


async def test_wrong_secret_refused(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with connect_device(live_server, demo, secret="not-the-secret"):
            pass
    assert caught.value.response.status_code == 401
    rows = await _audit(services, "device.connect")
    assert len(rows) == 1
    assert rows[0]["outcome"] == "refused"
    assert rows[0]["actor_id"] == DEVICE_ID
    assert rows[0]["detail"]["reason"] == "wrong device secret"
    assert services.counters.get("ingest.auth_refused") == 1


async def test_unknown_device_refused(live_server: LiveServer, demo: Demo) -> None:
    demo.device_id = "monitor-404"
    with pytest.raises(InvalidStatus) as caught:
        async with connect_device(live_server, demo):
            pass
    assert caught.value.response.status_code == 401


async def test_retired_device_refused(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    await services.pool.execute("UPDATE devices SET retired_at = now()")
    with pytest.raises(InvalidStatus) as caught:
        async with connect_device(live_server, demo):
            pass
    assert caught.value.response.status_code == 401
    rows = await _audit(services, "device.connect")
    assert rows[0]["detail"]["reason"] == "device is retired"


async def test_missing_credentials_refused(live_server: LiveServer) -> None:
    from websockets.asyncio.client import connect

    with pytest.raises(InvalidStatus) as caught:
        async with connect(live_server.ws_url("/ingest"), proxy=None):
            pass
    assert caught.value.response.status_code == 401


async def test_session_audited_with_counts(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    async with connect_device(live_server, demo) as device:
        for frame in (numerics(1), numerics(1), "{bad"):
            await device.send(frame)
            await receive_json(device)
    connects = await _audit(services, "device.connect")
    disconnects = await _wait_for_audit(services, "device.disconnect")
    assert [row["outcome"] for row in connects] == ["ok"]
    assert disconnects[0]["actor_kind"] == "device"
    assert disconnects[0]["detail"] == {"stored": 1, "duplicates": 1, "rejected": 1}


async def test_burst_acked_after_commit(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    async with connect_device(live_server, demo) as device:
        for seq in range(100):
            await device.send(numerics(seq))
        acked: list[int] = []
        while len(acked) < 100:
            acked.extend((await receive_json(device))["seqs"])
        stored = await _count(services, "device_messages")
    assert sorted(acked) == list(range(100))
    assert stored == 100


async def test_health_shows_counters(live_server: LiveServer, demo: Demo) -> None:
    async with connect_device(live_server, demo) as device:
        await device.send("{bad")
        await receive_json(device)
    async with httpx.AsyncClient(
        base_url=live_server.http_url, trust_env=False
    ) as http:
        health = await http.get("/health")
        metrics = await http.get("/metrics")
    assert health.status_code == 200
    assert health.json()["status"] == "ok"
    assert health.json()["database"] == "ok"
    assert health.json()["counters"]["ingest.rejected.message"] == 1
    assert metrics.json()["ingest.rejected.message"] == 1


async def test_storage_failure_closes_without_ack(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    await services.pool.execute("ALTER TABLE vitals RENAME TO vitals_moved")
    async with connect_device(live_server, demo) as device:
        await device.send(numerics(1))
        with pytest.raises(ConnectionClosed):
            await receive_json(device)
    assert device.close_code == 1011
    assert await _count(services, "device_messages") == 0
    assert services.counters.get("ingest.store_failed") == 1


async def test_unknown_field_counted_once(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    async with connect_device(live_server, demo) as device:
        for name in ("alpha", "beta"):
            await device.send(with_field(numerics(1), **{name: 1}))
            await receive_json(device)
    counters = services.counters.snapshot()
    assert counters["ingest.rejected.unknown_field"] == 2
    assert "ingest.rejected.alpha" not in counters


async def test_implausible_device_clock_flagged(
    services: Services, demo: Demo, caplog: pytest.LogCaptureFixture
) -> None:
    now = datetime.now(UTC)
    cases = {1: now - timedelta(hours=3), 2: now + timedelta(hours=1),
             3: datetime(1970, 1, 1, 0, 5, tzinfo=UTC)}
    messages = [decode_device_message(numerics(seq, measured_at=at))
                for seq, at in cases.items()]
    await store_batch(services.pool, DEVICE_ID, messages)
    rows = await services.pool.fetch(
        "SELECT seq, device_clock_suspect FROM device_messages ORDER BY seq"
    )
    # Three hours late is a buffer draining after an outage, not a wrong clock.
    assert [(row["seq"], row["device_clock_suspect"]) for row in rows] == [
        (1, False), (2, True), (3, True)
    ]
    assert "implausible" in caplog.text


async def test_data_gap_stored(services: Services, demo: Demo) -> None:
    now = datetime.now(UTC)
    gap = DataGap(device_id=DEVICE_ID, seq=40, sent_at=now, reason="buffer_full",
                  lead="II", first_sample_index=1000, sample_count=750,
                  first_at=now - timedelta(seconds=3), last_at=now, messages_dropped=3)
    await store_batch(services.pool, DEVICE_ID, [gap])
    row = await services.pool.fetchrow("SELECT * FROM data_gaps")
    assert row["patient_id"] == demo.patient_id
    assert (row["first_sample_index"], row["sample_count"]) == (1000, 750)
    assert row["messages_dropped"] == 3


async def test_old_alarm_change_not_relayed_after_newer(
    services: Services, demo: Demo
) -> None:
    # After an outage the agent sends its newest alarm changes first.
    cleared = decode_device_message(emergency(31, state="cleared"))
    raised = decode_device_message(emergency(30))
    batch = await store_batch(services.pool, DEVICE_ID, [cleared, raised])
    assert batch.superseded == {30}
    assert await _count(services, "alarms") == 2
