"""A TCP proxy on 127.0.0.1 that injects network faults between a client and a server.

Fault rehearsals put it between the bedside agent and central and switch its mode at
run time:

- ``PASS`` forwards bytes both ways unchanged.
- ``DROP`` resets every open connection and resets each new one right after accept,
  as a client sees a refused or broken route.
- ``BLACKHOLE`` keeps connections open but forwards nothing and stops reading, so
  the sender's TCP window fills. Bytes read before the switch are held, not lost, and
  go on when the mode leaves ``BLACKHOLE``, as TCP retransmission would deliver them.
- ``SLOW`` delays every chunk by ``latency_s`` and throttles to ``bytes_per_s``.
- ``RESET`` forwards the first half of the next chunk of each connection, then
  resets both sides with an RST, so the receiver gets a frame cut in the middle.

It runs in the caller's event loop::

    async with FaultProxy(upstream_port) as proxy:
        connect_to(proxy.port)
        proxy.set_mode(ProxyMode.BLACKHOLE)

Only the standard library is used, so the package rule (``firmware_sim`` imports
nothing but ``protocol``) holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import socket
import struct
from dataclasses import dataclass, field
from types import TracebackType
from typing import Self

logger = logging.getLogger(__name__)

LOCALHOST = "127.0.0.1"
READ_CHUNK_BYTES = 64 * 1024
# Bytes written per step in SLOW mode, so throttling spreads a chunk out in time.
SLOW_STEP_BYTES = 1024
DEFAULT_LATENCY_S = 0.2
DEFAULT_BYTES_PER_S = 64 * 1024
# After one direction ends, the other may still carry the peer's last bytes.
HALF_CLOSE_GRACE_S = 1.0
# struct linger {int l_onoff; int l_linger;}: on, zero seconds, so close() sends RST.
_LINGER_RESET = struct.pack("ii", 1, 0)


class ProxyMode(enum.Enum):
    """Fault applied to the proxy's connections and the bytes they carry."""

    PASS = "pass"
    DROP = "drop"
    BLACKHOLE = "blackhole"
    SLOW = "slow"
    RESET = "reset"


@dataclass
class ProxyCounters:
    """Counts of connections and bytes since the proxy started."""

    accepted: int = 0
    dropped_at_accept: int = 0
    resets: int = 0
    bytes_to_upstream: int = 0
    bytes_to_client: int = 0


def reset_transport(writer: asyncio.StreamWriter) -> None:
    """Close ``writer``'s socket with an RST instead of an orderly FIN."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
    writer.transport.abort()


@dataclass(eq=False)
class _Connection:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    reset_done: bool = False

    def reset(self) -> None:
        self.reset_done = True
        reset_transport(self.client)
        if self.upstream is not None:
            reset_transport(self.upstream)


class FaultProxy:
    """Forwards 127.0.0.1:``port`` to 127.0.0.1:``upstream_port`` with faults."""

    def __init__(self, upstream_port: int, listen_port: int = 0) -> None:
        self.upstream_port = upstream_port
        self.port = listen_port
        self.mode = ProxyMode.PASS
        self.latency_s = DEFAULT_LATENCY_S
        self.bytes_per_s = DEFAULT_BYTES_PER_S
        self.counters = ProxyCounters()
        self._connections: set[_Connection] = set()
        self._mode_changed = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._accept, LOCALHOST, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]
        logger.info("fault proxy on %s:%d forwards to port %d",
                    LOCALHOST, self.port, self.upstream_port)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections):
            connection.reset()
            for task in connection.tasks:
                task.cancel()
        tasks = [task for c in self._connections for task in c.tasks]
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
        logger.info("fault proxy on port %d closed: %s", self.port, self.counters)

    @property
    def open_connections(self) -> int:
        return len(self._connections)

    def set_mode(
        self,
        mode: ProxyMode,
        *,
        latency_s: float | None = None,
        bytes_per_s: int | None = None,
    ) -> None:
        """Switch to ``mode``; SLOW takes an optional latency and byte rate."""
        if latency_s is not None:
            self.latency_s = latency_s
        if bytes_per_s is not None:
            if bytes_per_s <= 0:
                raise ValueError(f"bytes_per_s must be positive, got {bytes_per_s}")
            self.bytes_per_s = bytes_per_s
        logger.info("fault proxy on port %d: %s -> %s",
                    self.port, self.mode.value, mode.value)
        self.mode = mode
        if mode is ProxyMode.DROP:
            for connection in list(self._connections):
                self.counters.resets += 1
                connection.reset()
        for connection in self._connections:
            connection.reset_done = False
        # Wake every pump held by BLACKHOLE; each then waits on a fresh event.
        self._mode_changed.set()
        self._mode_changed = asyncio.Event()

    async def _accept(
        self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter
    ) -> None:
        self.counters.accepted += 1
        if self.mode is ProxyMode.DROP:
            self.counters.dropped_at_accept += 1
            reset_transport(client_writer)
            return
        connection = _Connection(client_writer)
        self._connections.add(connection)
        try:
            await self._serve(connection, client_reader)
        finally:
            self._connections.discard(connection)
            for writer in (connection.client, connection.upstream):
                if writer is not None:
                    writer.close()

    async def _serve(
        self, connection: _Connection, client_reader: asyncio.StreamReader
    ) -> None:
        await self._wait_while_blackholed()
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(
                LOCALHOST, self.upstream_port
            )
        except OSError as exc:
            logger.info("fault proxy: upstream port %d unreachable: %s",
                        self.upstream_port, exc)
            reset_transport(connection.client)
            return
        connection.upstream = upstream_writer
        connection.tasks = [
            asyncio.create_task(
                self._pump(connection, client_reader, upstream_writer, to_client=False)
            ),
            asyncio.create_task(
                self._pump(connection, upstream_reader, connection.client, to_client=True)
            ),
        ]
        # Either side ending ends the connection soon after, as a real proxy would.
        _, pending = await asyncio.wait(
            connection.tasks, return_when=asyncio.FIRST_COMPLETED
        )
        if pending:
            _, pending = await asyncio.wait(pending, timeout=HALF_CLOSE_GRACE_S)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _wait_while_blackholed(self) -> None:
        while self.mode is ProxyMode.BLACKHOLE:
            await self._mode_changed.wait()

    async def _pump(
        self,
        connection: _Connection,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        *,
        to_client: bool,
    ) -> None:
        try:
            while True:
                await self._wait_while_blackholed()
                chunk = await reader.read(READ_CHUNK_BYTES)
                if not chunk:
                    break
                await self._wait_while_blackholed()
                if self.mode is ProxyMode.DROP:
                    break
                if self.mode is ProxyMode.RESET and not connection.reset_done:
                    await self._forward_half_then_reset(connection, writer, chunk)
                    break
                await self._forward(writer, chunk)
                self._count(len(chunk), to_client=to_client)
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError) as exc:
            logger.debug("fault proxy: connection ended: %s", exc)

    async def _forward(self, writer: asyncio.StreamWriter, chunk: bytes) -> None:
        if self.mode is not ProxyMode.SLOW:
            writer.write(chunk)
            await writer.drain()
            return
        await asyncio.sleep(self.latency_s)
        for start in range(0, len(chunk), SLOW_STEP_BYTES):
            step = chunk[start:start + SLOW_STEP_BYTES]
            writer.write(step)
            await writer.drain()
            await asyncio.sleep(len(step) / self.bytes_per_s)

    async def _forward_half_then_reset(
        self, connection: _Connection, writer: asyncio.StreamWriter, chunk: bytes
    ) -> None:
        # At least one byte goes through and at least one is held back, so the
        # receiver has an incomplete message when the RST arrives.
        half = max(1, len(chunk) // 2) if len(chunk) > 1 else 0
        writer.write(chunk[:half])
        await writer.drain()
        self.counters.resets += 1
        logger.info("fault proxy: reset a connection after %d of %d bytes",
                    half, len(chunk))
        connection.reset()

    def _count(self, size: int, *, to_client: bool) -> None:
        if to_client:
            self.counters.bytes_to_client += size
        else:
            self.counters.bytes_to_upstream += size
