"""Scale-out: two central instances relay events through a real Redis.

Redis comes from AURA_TEST_REDIS_URL when set, otherwise from a redis-server this
module starts for the session. Each test uses its own channel prefix, so tests and
other users of the same Redis do not see each other's events. The outage test always
starts its own redis-server, because it kills it.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from central_testkit import (
    Demo,
    LiveServer,
    connect_device,
    connect_events,
    emergency,
    numerics,
    receive_json,
    waveform,
)
from redis_testkit import (
    RedisProcess,
    redis_server_available,
    serve,
    wait_for_subscribers,
)
from websockets.asyncio.client import ClientConnection

from central.app import create_app
from central.config import Settings
from central.metrics import Counters
from central.redis_hub import RedisHub
from central.services import Services

SUBSCRIBE = json.dumps({"type": "subscribe", "v": 1, "patient_id": "P-0001"})

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    configured = os.environ.get("AURA_TEST_REDIS_URL")
    if configured:
        yield configured
        return
    if not redis_server_available():
        pytest.skip("redis-server not found; install it or set AURA_TEST_REDIS_URL")
    server = RedisProcess(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server.url
    finally:
        server.kill()


@pytest.fixture
def channel_prefix() -> str:
    return f"aura-test-{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def settings(
    database_url: str, tmp_path: Path, redis_url: str, channel_prefix: str
) -> Settings:
    """Settings of the first instance, which the shared fixtures start."""
    from central_testkit import JWT_SECRET

    return Settings.from_environ(
        {
            "DATABASE_URL": database_url,
            "JWT_SECRET": JWT_SECRET,
            "AURA_DATA_DIR": str(tmp_path / "first"),
            "REDIS_URL": redis_url,
            "AURA_REDIS_CHANNEL_PREFIX": channel_prefix,
        }
    )


@pytest.fixture
async def second_server(settings: Settings, tmp_path: Path) -> AsyncIterator[LiveServer]:
    app = create_app(settings.replace(data_dir=tmp_path / "second"))
    async with serve(app) as server:
        yield server


def services_of_server(server: LiveServer) -> Services:
    return server.app.state.services


async def subscribe(nurse: ClientConnection) -> None:
    await nurse.send(SUBSCRIBE)
    reply = await receive_json(nurse)
    assert reply["type"] == "subscribed", reply


async def receive_types(nurse: ClientConnection, count: int) -> list[str]:
    return [(await receive_json(nurse))["type"] for _ in range(count)]


async def receive_until(nurse: ClientConnection, event_type: str) -> dict[str, Any]:
    while (event := await receive_json(nurse))["type"] != event_type:
        pass
    return event


def heart_rate(event: dict[str, Any]) -> float:
    return event["measurements"][0]["value"]


async def send_and_wait_for_acks(device: ClientConnection, frames: list[str]) -> list[int]:
    for frame in frames:
        await device.send(frame)
    acked: list[int] = []
    while len(acked) < len(frames):
        acked += (await receive_json(device))["seqs"]
    return acked


async def test_events_reach_client_on_other_instance(
    live_server: LiveServer,
    second_server: LiveServer,
    demo: Demo,
    redis_url: str,
    channel_prefix: str,
) -> None:
    async with (
        connect_events(live_server, demo.ana_token) as nurse_first,
        connect_events(second_server, demo.ana_token) as nurse_second,
    ):
        await subscribe(nurse_first)
        await subscribe(nurse_second)
        await wait_for_subscribers(redis_url, f"{channel_prefix}patient:P-0001", 2)
        async with connect_device(live_server, demo) as device:
            await send_and_wait_for_acks(
                device, [numerics(0), waveform(1), emergency(2)]
            )
        expected = ["vitals.update", "vitals.update", "patient.emergency"]
        assert await receive_types(nurse_second, 3) == expected
        assert await receive_types(nurse_first, 3) == expected

        # The same device now on the second instance: each client gets the event
        # once, so the next event after the three above is this one.
        async with connect_device(second_server, demo) as device:
            await send_and_wait_for_acks(device, [numerics(3, heart_rate=99.0)])
        for nurse in (nurse_first, nurse_second):
            event = await receive_json(nurse)
            assert event["type"] == "vitals.update"
            assert heart_rate(event) == 99.0
    assert services_of_server(second_server).counters.get("redis.received") == 3


async def test_consent_checked_on_delivering_instance(
    live_server: LiveServer, second_server: LiveServer, demo: Demo
) -> None:
    async with connect_events(second_server, demo.ben_token) as unassigned:
        await unassigned.send(SUBSCRIBE)
        reply = await receive_json(unassigned)
    assert reply["type"] == "error"
    assert reply["status"] == 403
    assert services_of_server(second_server).counters.get("consent.refused") == 1


async def test_device_moving_instance_stores_once(
    live_server: LiveServer,
    second_server: LiveServer,
    demo: Demo,
    database_url: str,
    redis_url: str,
    channel_prefix: str,
) -> None:
    async with connect_events(second_server, demo.ana_token) as nurse:
        await subscribe(nurse)
        await wait_for_subscribers(redis_url, f"{channel_prefix}patient:P-0001", 1)
        async with connect_device(live_server, demo) as device:
            first = await send_and_wait_for_acks(
                device, [numerics(seq, heart_rate=60.0 + seq) for seq in range(10)]
            )
        # The device lost its link after seq 9 was stored and resends from seq 5,
        # as an agent does with messages whose ack it never received.
        async with connect_device(second_server, demo) as device:
            second = await send_and_wait_for_acks(
                device, [numerics(seq, heart_rate=60.0 + seq) for seq in range(5, 15)]
            )
            await send_and_wait_for_acks(device, [emergency(15)])
        rates = []
        while (event := await receive_json(nurse))["type"] == "vitals.update":
            rates.append(heart_rate(event))
        assert event["type"] == "patient.emergency"
    assert sorted(first) == list(range(10))
    assert sorted(second) == list(range(5, 15))
    assert sorted(rates) == [60.0 + seq for seq in range(15)]
    connection = await asyncpg.connect(database_url)
    try:
        stored = await connection.fetchval(
            "SELECT count(*) FROM device_messages WHERE device_id = $1", demo.device_id
        )
        vitals = await connection.fetchval(
            "SELECT count(*) FROM vitals WHERE device_id = $1", demo.device_id
        )
    finally:
        await connection.close()
    assert stored == 16
    assert vitals == 30
    assert services_of_server(second_server).counters.get("ingest.duplicates") == 5


async def health(server: LiveServer) -> dict[str, Any]:
    async with httpx.AsyncClient(trust_env=False) as client:
        response = await client.get(f"{server.http_url}/health")
    assert response.status_code == 200
    return response.json()


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[RedisProcess]:
    if not redis_server_available():
        pytest.skip("redis-server not found; the outage test starts and kills its own")
    server = RedisProcess(tmp_path / "redis")
    server.start()
    try:
        yield server
    finally:
        server.kill()


async def test_redis_outage_keeps_local_delivery(
    settings: Settings,
    services: Services,
    demo: Demo,
    private_redis: RedisProcess,
    tmp_path: Path,
) -> None:
    own = settings.replace(redis_url=private_redis.url)
    channel = f"{own.redis_channel_prefix}patient:P-0001"
    async with (
        serve(create_app(own.replace(data_dir=tmp_path / "a"))) as first,
        serve(create_app(own.replace(data_dir=tmp_path / "b"))) as second,
        connect_events(first, demo.ana_token) as nurse_first,
        connect_events(second, demo.ana_token) as nurse_second,
        connect_device(first, demo) as device,
    ):
        await subscribe(nurse_first)
        await subscribe(nurse_second)
        assert (await health(first))["redis"] == "ok"

        private_redis.kill()
        alarm = await receive_until(nurse_first, "system.alarm")
        assert alarm["state"] == "raised"
        assert alarm["kind"] == "event_relay_down"
        report = await health(first)
        assert report["redis"] == "down"
        assert report["status"] == "degraded"
        assert report["counters"]["redis.outages"] == 1

        await send_and_wait_for_acks(device, [numerics(0, heart_rate=70.0)])
        event = await receive_until(nurse_first, "vitals.update")
        assert heart_rate(event) == 70.0

        private_redis.start()
        cleared = await receive_until(nurse_first, "system.alarm")
        assert cleared["state"] == "cleared"
        assert cleared["alarm_id"] == alarm["alarm_id"]
        await receive_until(nurse_second, "system.alarm")  # raised
        assert (await receive_until(nurse_second, "system.alarm"))["state"] == "cleared"
        await wait_for_subscribers(private_redis.url, channel, 2)
        assert (await health(first))["redis"] == "ok"

        await send_and_wait_for_acks(device, [numerics(1, heart_rate=88.0)])
        event = await receive_until(nurse_second, "vitals.update")
        assert heart_rate(event) == 88.0


async def test_full_outgoing_queue_drops_waveforms_first() -> None:
    counters = Counters()
    # Nothing listens on port 1 and nothing connects before start(), so this only
    # exercises the outgoing queue.
    hub = RedisHub("redis://127.0.0.1:1/0", counters, outgoing_capacity=2)
    hub._up = True
    hub.publish("P-1", "keep-1", droppable=False)
    hub.publish("P-1", "wave-1", droppable=True)
    hub.publish("P-1", "wave-2", droppable=True)
    assert counters.get("redis.outgoing_dropped") == 1
    hub.publish("P-1", "keep-2", droppable=False)
    queued = [message.rsplit("\n", 1)[1] for _, message, _ in hub._outgoing]
    assert queued == ["keep-1", "keep-2"]
    assert counters.get("redis.outgoing_dropped") == 2
    hub.publish("P-1", "keep-3", droppable=False)
    queued = [message.rsplit("\n", 1)[1] for _, message, _ in hub._outgoing]
    assert queued == ["keep-2", "keep-3"]
    assert counters.get("redis.outgoing_dropped") == 3
    await hub.wait_closed()


async def test_publish_skipped_while_relay_down() -> None:
    counters = Counters()
    hub = RedisHub("redis://127.0.0.1:1/0", counters)
    assert hub.publish("P-1", "event", droppable=False) == 0
    assert counters.get("redis.publish_skipped") == 1
    assert len(hub._outgoing) == 0
    assert hub.relay_status() == "down"
    await hub.wait_closed()
