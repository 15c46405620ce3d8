"""Alarm acknowledgement: consent, audit, and delivery to the device now or later."""

from __future__ import annotations

import asyncio

import httpx
from central_testkit import (
    DEVICE_ID,
    Demo,
    LiveServer,
    bearer,
    connect_device,
    emergency,
    numerics,
    receive_json,
)

from central.services import Services
from central.storage import store_batch
from protocol.messages import (
    AlarmAcknowledge,
    decode_central_message,
    decode_device_message,
)


def _path(patient_id: str, alarm_id: str = "alarm-1") -> str:
    return f"/patients/{patient_id}/alarms/{alarm_id}/acknowledge"


async def _store(services: Services, *frames: str) -> None:
    messages = [decode_device_message(frame) for frame in frames]
    await store_batch(services.pool, DEVICE_ID, messages)


async def _delivered_at(services: Services) -> list[object]:
    rows = await services.pool.fetch(
        "SELECT delivered_at FROM alarm_acknowledgements ORDER BY id"
    )
    return [row["delivered_at"] for row in rows]


async def test_assigned_nurse_acknowledges(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, emergency(1))
    response = await client.post(_path(demo.patient_id), headers=bearer(demo.ana_token))
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["delivery"] == "queued"
    assert body["kind"] == "tachycardia"
    assert body["devices"] == [{"device_id": DEVICE_ID, "delivered": False}]
    rows = await services.pool.fetch(
        "SELECT alarm_id, device_id, patient_id, user_id FROM alarm_acknowledgements"
    )
    assert [tuple(row) for row in rows] == [
        ("alarm-1", DEVICE_ID, demo.patient_id, demo.ana_id)
    ]
    audit = await services.pool.fetch(
        "SELECT actor_id, patient_id, outcome, detail FROM audit_log "
        "WHERE action = 'alarm.acknowledge'"
    )
    assert len(audit) == 1
    assert audit[0]["actor_id"] == str(demo.ana_id)
    assert audit[0]["patient_id"] == demo.patient_id
    assert audit[0]["outcome"] == "ok"
    assert audit[0]["detail"]["alarm_id"] == "alarm-1"
    assert audit[0]["detail"]["device_ids"] == [DEVICE_ID]


async def test_unassigned_nurse_forbidden(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, emergency(1))
    response = await client.post(_path(demo.patient_id), headers=bearer(demo.ben_token))
    assert response.status_code == 403
    assert await _delivered_at(services) == []
    outcome = await services.pool.fetchval(
        "SELECT outcome FROM audit_log WHERE action = 'alarm.acknowledge'"
    )
    assert outcome == "refused"


async def test_acknowledge_requires_token(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, emergency(1))
    response = await client.post(_path(demo.patient_id))
    assert response.status_code == 401


async def test_unknown_or_cleared_alarm_not_found(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    headers = bearer(demo.ana_token)
    path = _path(demo.patient_id, "no-such-alarm")
    unknown = await client.post(path, headers=headers)
    assert unknown.status_code == 404
    await _store(services, emergency(1), emergency(2, state="cleared"))
    cleared = await client.post(_path(demo.patient_id), headers=headers)
    assert cleared.status_code == 404
    assert await _delivered_at(services) == []


async def test_delivered_to_connected_device(
    client: httpx.AsyncClient, services: Services, live_server: LiveServer, demo: Demo
) -> None:
    async with connect_device(live_server, demo) as device:
        await device.send(emergency(1))
        assert (await receive_json(device))["type"] == "ack"
        response = await client.post(
            _path(demo.patient_id), headers=bearer(demo.ana_token)
        )
        assert response.status_code == 202, response.text
        assert response.json()["delivery"] == "delivered"
        message = decode_central_message(await asyncio.wait_for(device.recv(), 5))
    assert isinstance(message, AlarmAcknowledge)
    assert message.alarm_id == "alarm-1"
    assert message.kind == "tachycardia"
    assert message.acknowledged_by
    delivered = await _delivered_at(services)
    assert len(delivered) == 1
    assert delivered[0] is not None


async def test_queued_until_next_connection(
    client: httpx.AsyncClient, services: Services, live_server: LiveServer, demo: Demo
) -> None:
    await _store(services, emergency(1))
    response = await client.post(_path(demo.patient_id), headers=bearer(demo.ana_token))
    assert response.json()["delivery"] == "queued"
    assert await _delivered_at(services) == [None]
    async with connect_device(live_server, demo) as device:
        message = decode_central_message(await asyncio.wait_for(device.recv(), 5))
    assert isinstance(message, AlarmAcknowledge)
    assert message.alarm_id == "alarm-1"
    # Central marks the row after handing the frame over, so the device may see the
    # message before the mark is committed.
    delivered = await _delivered_at(services)
    for _ in range(50):
        if delivered[0] is not None:
            break
        await asyncio.sleep(0.1)
        delivered = await _delivered_at(services)
    assert delivered[0] is not None
    # Delivered once: the next connection gets only the ack of what it sends.
    async with connect_device(live_server, demo) as device:
        await device.send(numerics(3))
        assert (await receive_json(device))["type"] == "ack"


async def test_second_acknowledgement_409(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, emergency(1))
    first = await client.post(_path(demo.patient_id), headers=bearer(demo.ana_token))
    second = await client.post(_path(demo.patient_id), headers=bearer(demo.ana_token))
    assert first.status_code == 202, first.text
    assert second.status_code == 409, second.text
    body = second.json()
    assert body["acknowledged_by"] == "Ana"
    assert body["acknowledged_at"] == first.json()["acknowledged_at"]
    assert "already acknowledged by Ana" in body["error"]
    count = await services.pool.fetchval("SELECT count(*) FROM alarm_acknowledgements")
    assert count == 1
    outcomes = await services.pool.fetch(
        "SELECT outcome, detail FROM audit_log WHERE action = 'alarm.acknowledge' "
        "ORDER BY id"
    )
    assert [row["outcome"] for row in outcomes] == ["ok", "refused"]
    assert outcomes[1]["detail"]["reason"] == "already acknowledged"


async def test_acknowledgement_after_clear_409(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    # A latched alarm clears once acknowledged; a late second click must still say
    # who acknowledged it rather than that the alarm does not exist.
    await _store(services, emergency(1))
    first = await client.post(_path(demo.patient_id), headers=bearer(demo.ana_token))
    await _store(services, emergency(2, state="cleared"))
    second = await client.post(_path(demo.patient_id), headers=bearer(demo.ana_token))
    assert first.status_code == 202
    assert second.status_code == 409
    assert second.json()["acknowledged_by"] == "Ana"


async def test_concurrent_acknowledgements_one_wins(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _store(services, emergency(1))
    responses = await asyncio.gather(
        *(
            client.post(_path(demo.patient_id), headers=bearer(demo.ana_token))
            for _ in range(4)
        )
    )
    statuses = sorted(response.status_code for response in responses)
    assert statuses == [202, 409, 409, 409]
    count = await services.pool.fetchval("SELECT count(*) FROM alarm_acknowledgements")
    assert count == 1
