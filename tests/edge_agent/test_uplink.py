"""The uplink against a real WebSocket server standing in for central's ingest."""

import asyncio
import base64
import socket
from datetime import datetime, timezone
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve

from edge_agent.buffer import MessageBuffer, Priority
from edge_agent.config import CentralSettings
from edge_agent.uplink import Backoff, Uplink
from protocol.messages import Ack, DeviceHello, Rejected, decode_device_message, encode

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)


def hello(seq: int) -> DeviceHello:
    return DeviceHello(device_id="dev-1", seq=seq, sent_at=NOW, model="m", firmware="f")


class FakeIngest:
    """Acks every message except those listed in ``reject``; records what it saw."""

    def __init__(self, reject: set[int] | None = None, drop_after: int | None = None):
        self.received: list[int] = []
        self.authorization: list[str] = []
        self.reject = reject or set()
        self.drop_after = drop_after

    async def handler(self, connection: ServerConnection) -> None:
        self.authorization.append(connection.request.headers["Authorization"])
        async for frame in connection:
            seq = decode_device_message(frame).seq
            self.received.append(seq)
            if self.drop_after is not None and len(self.received) == self.drop_after:
                self.drop_after = None
                await connection.close()
                return
            if seq in self.reject:
                await connection.send(encode(Rejected(seq=seq, field="x", problem="no")))
            else:
                await connection.send(encode(Ack(seqs=[seq])))


async def run_uplink(tmp_path: Path, ingest: FakeIngest, count: int) -> MessageBuffer:
    async with serve(ingest.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        settings = CentralSettings(
            url=f"ws://127.0.0.1:{port}/ingest", reconnect_min_delay_s=0.01,
            reconnect_max_delay_s=0.05,
        )
        buffer = MessageBuffer(tmp_path / "buffer.sqlite3")
        await buffer.open()
        for _ in range(count):
            await buffer.append(hello, Priority.NUMERICS)
        uplink = Uplink(settings, buffer, "dev-1", "pw")
        task = asyncio.create_task(uplink.run())
        async with asyncio.timeout(10):
            while await buffer.pending_count():
                await asyncio.sleep(0.01)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return buffer


async def test_acked_messages_leave_buffer(tmp_path: Path) -> None:
    ingest = FakeIngest()
    buffer = await run_uplink(tmp_path, ingest, 20)
    assert sorted(ingest.received) == list(range(20))
    expected = "Basic " + base64.b64encode(b"dev-1:pw").decode()
    assert ingest.authorization[0] == expected
    await buffer.close()


async def test_unacked_messages_resent_after_drop(tmp_path: Path) -> None:
    ingest = FakeIngest(drop_after=5)
    buffer = await run_uplink(tmp_path, ingest, 20)
    assert set(ingest.received) == set(range(20))
    # The fifth message was received but never acked, so it was sent again.
    assert ingest.received.count(ingest.received[4]) == 2
    await buffer.close()


async def test_rejected_message_not_resent(tmp_path: Path) -> None:
    ingest = FakeIngest(reject={3})
    buffer = await run_uplink(tmp_path, ingest, 6)
    assert ingest.received.count(3) == 1
    async with buffer.db.execute("SELECT seq FROM rejected") as cursor:
        assert await cursor.fetchall() == [(3,)]
    await buffer.close()


def test_backoff_grows_and_is_capped() -> None:
    backoff = Backoff(0.5, 4.0, uniform=lambda low, high: high)
    delays = [backoff.next_delay() for _ in range(6)]
    assert delays == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    backoff.reset()
    assert backoff.next_delay() == 0.5


def test_backoff_jitter_stays_in_range() -> None:
    backoff = Backoff(0.5, 30.0)
    for attempt in range(20):
        delay = backoff.next_delay()
        assert 0.5 <= delay <= min(30.0, 0.5 * 2**attempt)


async def test_silent_central_replaced(tmp_path: Path) -> None:
    connections: list[ServerConnection] = []

    async def silent(connection: ServerConnection) -> None:
        connections.append(connection)
        async for _ in connection:
            pass  # reads everything, acknowledges nothing

    async with serve(silent, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        settings = CentralSettings(
            url=f"ws://127.0.0.1:{port}/ingest", reconnect_min_delay_s=0.01,
            reconnect_max_delay_s=0.05, ack_timeout_s=0.5,
        )
        buffer = MessageBuffer(tmp_path / "buffer.sqlite3")
        await buffer.open()
        await buffer.append(hello, Priority.NUMERICS)
        uplink = Uplink(settings, buffer, "dev-1", "pw")
        task = asyncio.create_task(uplink.run())
        async with asyncio.timeout(10):
            while len(connections) < 2:
                await asyncio.sleep(0.05)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        assert await buffer.pending_count() == 1
        await buffer.close()


async def test_unreachable_central_fails_over(tmp_path: Path) -> None:
    ingest = FakeIngest(drop_after=5)
    with socket.socket() as unused:
        # Bound but never listening, so connecting to it is refused at once.
        unused.bind(("127.0.0.1", 0))
        dead_port = unused.getsockname()[1]
        async with serve(ingest.handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            settings = CentralSettings(
                url=f"ws://127.0.0.1:{dead_port}/ingest",
                fallback_urls=[f"ws://127.0.0.1:{port}/ingest"],
                reconnect_min_delay_s=0.01, reconnect_max_delay_s=0.05,
            )
            buffer = MessageBuffer(tmp_path / "buffer.sqlite3")
            await buffer.open()
            for _ in range(20):
                await buffer.append(hello, Priority.NUMERICS)
            uplink = Uplink(settings, buffer, "dev-1", "pw")
            task = asyncio.create_task(uplink.run())
            async with asyncio.timeout(10):
                while await buffer.pending_count():
                    await asyncio.sleep(0.01)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    assert set(ingest.received) == set(range(20))
    # The drop after five messages sent the uplink round the list and back again.
    assert uplink.connections == 2
    await buffer.close()
