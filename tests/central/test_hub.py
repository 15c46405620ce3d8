"""Event fan-out: per-client bounded queues and the slow-client policy."""

from __future__ import annotations

import asyncio
import json
import socket

import httpx

from central_testkit import (
    Demo,
    LiveServer,
    bearer,
    connect_device,
    receive_json,
    waveform,
)
from websockets.asyncio.client import connect

from central.hub import ClientQueue, InProcessHub
from central.metrics import Counters
from central.services import Services

SUBSCRIBE = json.dumps({"type": "subscribe", "v": 1, "patient_id": "P-0001"})


def _queue(capacity: int = 3) -> tuple[ClientQueue, Counters]:
    counters = Counters()
    return ClientQueue("test client", counters, capacity=capacity), counters


async def _drain(queue: ClientQueue) -> list[str]:
    items = []
    while len(queue):
        items.append(await queue.get())
    return items


async def test_full_queue_drops_waveform() -> None:
    queue, counters = _queue()
    for index in range(3):
        assert queue.offer(f"w{index}", droppable=True)
    assert not queue.offer("w3", droppable=True)
    assert await _drain(queue) == ["w0", "w1", "w2"]
    assert counters.get("events.waveform_dropped") == 1


async def test_emergency_evicts_oldest_waveform() -> None:
    queue, counters = _queue()
    queue.offer("n0", droppable=False)
    queue.offer("w1", droppable=True)
    queue.offer("w2", droppable=True)
    assert queue.offer("e3", droppable=False)
    assert await _drain(queue) == ["n0", "w2", "e3"]
    assert counters.get("events.waveform_dropped") == 1


async def test_queue_full_of_emergencies_closes() -> None:
    queue, counters = _queue()
    for index in range(3):
        queue.offer(f"e{index}", droppable=False)
    assert not queue.offer("e3", droppable=False)
    assert queue.closed
    assert await queue.get() is None
    assert counters.get("events.clients_closed_slow") == 1


async def test_get_waits_for_offer() -> None:
    queue, _ = _queue()
    waiter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.offer("x", droppable=False)
    assert await asyncio.wait_for(waiter, 1) == "x"


async def test_publish_shares_one_payload() -> None:
    hub = InProcessHub()
    first, _ = _queue()
    second, _ = _queue()
    other, _ = _queue()
    hub.subscribe("P-1", first)
    hub.subscribe("P-1", second)
    hub.subscribe("P-2", other)
    payload = json.dumps({"type": "vitals.update"})
    assert hub.publish("P-1", payload, droppable=False) == 2
    assert (await first.get()) is payload
    assert (await second.get()) is payload
    assert len(other) == 0


async def test_remove_drops_all_subscriptions() -> None:
    hub = InProcessHub()
    queue, _ = _queue()
    hub.subscribe("P-1", queue)
    hub.subscribe("P-2", queue)
    hub.remove(queue)
    assert hub.publish("P-1", "x", droppable=False) == 0
    assert hub.publish("P-2", "x", droppable=False) == 0


def _small_buffer_socket(port: int) -> socket.socket:
    # A tiny receive buffer (and no compression, which would shrink the repetitive
    # test samples to almost nothing) makes a client that stops reading back up
    # quickly, so the test depends less on how much the kernel buffers.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


async def test_stalled_client_does_not_block_ingest(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    rounds, per_round = 30, 50
    sent = 0
    stalled = await connect(
        live_server.ws_url("/events"),
        sock=_small_buffer_socket(live_server.port),
        additional_headers=bearer(demo.ana_token),
        proxy=None,
        max_queue=1,
        compression=None,
    )
    try:
        await stalled.send(SUBSCRIBE)
        await receive_json(stalled)
        # From here on the client reads nothing, so its socket buffers fill up.
        async with connect_device(live_server, demo) as device:
            for _ in range(rounds):
                for _ in range(per_round):
                    frame = waveform(sent, first_sample_index=sent * 4096, samples=4096)
                    await device.send(frame)
                    sent += 1
                acked = 0
                while acked < per_round:
                    acked += len((await receive_json(device))["seqs"])
                if services.counters.get("events.waveform_dropped"):
                    break
    finally:
        stalled.transport.abort()
    assert services.counters.get("ingest.stored") == sent
    assert services.counters.get("events.waveform_dropped") > 0


async def test_health_reports_relay_off(client: httpx.AsyncClient) -> None:
    response = await client.get("/health")
    assert response.status_code == 200
    assert response.json()["redis"] == "off"


async def test_broadcast_reaches_each_queue_once() -> None:
    hub = InProcessHub()
    first, _ = _queue()
    second, _ = _queue()
    hub.subscribe("P-1", first)
    hub.subscribe("P-2", first)
    hub.subscribe("P-2", second)
    assert hub.broadcast("alarm", droppable=False) == 2
    assert await _drain(first) == ["alarm"]
    assert await _drain(second) == ["alarm"]
