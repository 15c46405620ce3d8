"""Escalation of unacknowledged high-priority alarms, driven by an injected clock."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import httpx
from central_testkit import (
    DEVICE_ID,
    PASSWORD,
    Demo,
    LiveServer,
    bearer,
    connect_events,
    emergency,
    receive_json,
)

from central.auth import issue_token
from central.escalation import escalate_due, run_escalations
from central.hub import ClientQueue, user_channel
from central.services import Services
from central.storage import store_batch
from central.users import ensure_assignment, upsert_user
from protocol.messages import (
    AlarmEscalated,
    Emergency,
    Subscribe,
    decode_device_message,
    decode_server_event,
    encode,
)

AFTER = timedelta(seconds=120)  # the default ESCALATION_AFTER_S


async def _store(services: Services, *frames: str) -> None:
    messages = [decode_device_message(frame) for frame in frames]
    await store_batch(services.pool, DEVICE_ID, messages)


async def _physician(services: Services, patient_id: str | None) -> int:
    async with services.pool.acquire() as connection:
        user_id = await upsert_user(
            connection, "dr.eva", "Eva", PASSWORD, ["physician"]
        )
        if patient_id is not None:
            await ensure_assignment(connection, user_id, patient_id)
    return user_id


def _alarm(seq: int, priority: str, started_at: datetime, state: str = "raised") -> str:
    message = Emergency(
        device_id=DEVICE_ID,
        seq=seq,
        sent_at=started_at,
        alarm_id=f"{priority}-alarm",
        kind="asystole" if priority == "high" else "leads_off",
        priority=priority,
        state=state,
        started_at=started_at,
        evidence="no QRS for 4 s",
    )
    return encode(message).decode()


async def _stored_raise_time(services: Services) -> datetime:
    return await services.pool.fetchval(
        "SELECT least(a.started_at, m.received_at) FROM alarms a "
        "JOIN device_messages m USING (device_id, seq) WHERE a.alarm_id = 'alarm-1'"
    )


async def test_not_escalated_before_due(services: Services, demo: Demo) -> None:
    await _physician(services, demo.patient_id)
    await _store(services, emergency(1))
    raised = await _stored_raise_time(services)
    escalated = await escalate_due(services, raised + AFTER - timedelta(seconds=1))
    assert escalated == []
    count = await services.pool.fetchval("SELECT count(*) FROM alarm_escalations")
    assert count == 0


async def test_escalated_once_when_due(services: Services, demo: Demo) -> None:
    physician = await _physician(services, demo.patient_id)
    queue = ClientQueue("physician", services.counters)
    services.hub.subscribe(user_channel(physician), queue)
    await _store(services, emergency(1))
    due_at = await _stored_raise_time(services) + AFTER

    (escalation,) = await escalate_due(services, due_at)
    assert escalation.recipient_user_ids == (physician,)
    assert escalation.connections_reached == 1
    assert await escalate_due(services, due_at + timedelta(minutes=5)) == []

    event = decode_server_event(await asyncio.wait_for(queue.get(), 1))
    assert isinstance(event, AlarmEscalated)
    assert event.alarm_id == "alarm-1"
    assert event.unacknowledged_s == 120.0
    assert event.recipient_role == "physician"
    row = await services.pool.fetchrow("SELECT * FROM alarm_escalations")
    assert row["escalated_at"] == due_at
    assert list(row["recipient_user_ids"]) == [physician]
    audit = await services.pool.fetchrow(
        "SELECT actor_kind, actor_id, patient_id, detail FROM audit_log "
        "WHERE action = 'alarm.escalate'"
    )
    assert (audit["actor_kind"], audit["actor_id"]) == ("system", "escalation")
    assert audit["patient_id"] == demo.patient_id
    assert audit["detail"]["recipient_user_ids"] == [physician]


async def test_concurrent_passes_escalate_once(services: Services, demo: Demo) -> None:
    await _physician(services, demo.patient_id)
    await _store(services, emergency(1))
    due_at = await _stored_raise_time(services) + AFTER
    results = await asyncio.gather(*(escalate_due(services, due_at) for _ in range(4)))
    assert sorted(len(result) for result in results) == [0, 0, 0, 1]
    audits = await services.pool.fetchval(
        "SELECT count(*) FROM audit_log WHERE action = 'alarm.escalate'"
    )
    assert audits == 1


async def test_acknowledged_alarm_not_escalated(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _physician(services, demo.patient_id)
    await _store(services, emergency(1))
    due_at = await _stored_raise_time(services) + AFTER
    response = await client.post(
        f"/patients/{demo.patient_id}/alarms/alarm-1/acknowledge",
        headers=bearer(demo.ana_token),
    )
    assert response.status_code == 202
    assert await escalate_due(services, due_at) == []


async def test_cleared_and_lower_priority_not_escalated(
    services: Services, demo: Demo
) -> None:
    await _physician(services, demo.patient_id)
    now = datetime.now(UTC)
    await _store(
        services,
        _alarm(1, "high", now),
        _alarm(2, "high", now, state="cleared"),
        _alarm(3, "medium", now),
    )
    assert await escalate_due(services, now + timedelta(hours=1)) == []


async def test_recipient_needs_consent(services: Services, demo: Demo) -> None:
    await _physician(services, None)
    await _store(services, emergency(1))
    due_at = await _stored_raise_time(services) + AFTER
    (escalation,) = await escalate_due(services, due_at)
    assert escalation.recipient_user_ids == ()
    assert services.counters.snapshot()["alarms.escalated_without_recipient"] == 1


async def test_escalation_on_ward_list(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    await _physician(services, demo.patient_id)
    await _store(services, emergency(1))
    await escalate_due(services, await _stored_raise_time(services) + AFTER)
    response = await client.get("/care/ward", headers=bearer(demo.ana_token))
    (item,) = [i for i in response.json()["items"] if i["kind"] == "alarm"]
    assert item["alarm"]["escalation"]["recipient_role"] == "physician"
    assert item["alarm"]["acknowledged"] is None
    assert "escalated to the physician" in item["reason"]


async def test_event_reaches_physician_dashboard(
    live_server: LiveServer, services: Services, demo: Demo
) -> None:
    physician = await _physician(services, demo.patient_id)
    token = issue_token(services.settings.jwt_secret, physician, 300)
    await _store(services, emergency(1))
    due_at = await _stored_raise_time(services) + AFTER
    async with connect_events(live_server, token) as socket:
        # The connection is registered once the server has read its first request.
        await socket.send(encode(Subscribe(patient_id=demo.patient_id)).decode())
        assert (await receive_json(socket))["type"] == "subscribed"
        await escalate_due(services, due_at)
        event = await receive_json(socket)
    assert event["type"] == "alarm.escalated"
    assert event["patient_id"] == demo.patient_id
    assert event["bed"] == "Bed 1"


async def test_background_loop_escalates(services: Services, demo: Demo) -> None:
    services.settings = services.settings.replace(escalation_after_s=1)
    await _physician(services, demo.patient_id)
    await _store(services, _alarm(1, "high", datetime.now(UTC) - timedelta(seconds=10)))
    loop = asyncio.create_task(run_escalations(services, interval_s=0.05))
    try:
        for _ in range(100):
            count = await services.pool.fetchval(
                "SELECT count(*) FROM alarm_escalations"
            )
            if count:
                break
            await asyncio.sleep(0.05)
    finally:
        loop.cancel()
        await asyncio.gather(loop, return_exceptions=True)
    assert count == 1
