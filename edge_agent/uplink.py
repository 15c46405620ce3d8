"""The link to central: send buffered messages, forget them only when acknowledged.

Sending is pipelined: up to ``max_in_flight`` messages wait for their ``ack`` at once.
After a reconnect everything not yet acknowledged is sent again; central stores by
(device, sequence), so a resend is harmless. When a connection fails or breaks, the
next attempt goes to the next of the configured central URLs, so a crashed central
instance is replaced by another one.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from protocol.errors import ProtocolError
from protocol.messages import (
    Ack,
    AlarmAcknowledge,
    Rejected,
    decode_central_message,
)
from edge_agent.buffer import MessageBuffer
from edge_agent.config import CentralSettings, central_urls

logger = logging.getLogger(__name__)

# A connection that stayed up this long counts as healthy, so the next outage starts
# again from the shortest reconnect delay.
STABLE_CONNECTION_S = 30.0
# Messages fetched from the buffer per read; small enough to keep each read short.
BATCH_SIZE = 128
# A dead connection cannot complete the closing handshake; waiting long for it only
# delays the reconnect.
CLOSE_TIMEOUT_S = 2.0
# Central accepts frames up to 1 MiB; our largest message is a few tens of kB.
MAX_FRAME_BYTES = 1 << 20

AcknowledgeHandler = Callable[[AlarmAcknowledge], Awaitable[None]]


class Backoff:
    """Exponential reconnect delay with full jitter, so beds do not reconnect in step."""

    def __init__(
        self, minimum_s: float, maximum_s: float,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.minimum_s = minimum_s
        self.maximum_s = maximum_s
        self._uniform = uniform
        self.attempt = 0

    def next_delay(self) -> float:
        ceiling = min(self.maximum_s, self.minimum_s * 2**self.attempt)
        self.attempt += 1
        return self._uniform(self.minimum_s, max(self.minimum_s, ceiling))

    def reset(self) -> None:
        self.attempt = 0


def basic_credentials(device_id: str, secret: str) -> str:
    token = base64.b64encode(f"{device_id}:{secret}".encode()).decode("ascii")
    return f"Basic {token}"


async def _first_to_finish(*coroutines: Coroutine[Any, Any, None]) -> None:
    """Run coroutines until one ends, cancel the rest, re-raise the first error.

    Unlike a TaskGroup this raises the plain exception, not an ExceptionGroup, so the
    reconnect loop can tell a lost link from a bug.
    """
    tasks = [asyncio.create_task(coroutine) for coroutine in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        task.result()


class Uplink:
    """Keeps one WebSocket to central open and drains the buffer through it."""

    def __init__(
        self, settings: CentralSettings, buffer: MessageBuffer, device_id: str,
        secret: str,
        on_alarm_acknowledge: AcknowledgeHandler | None = None,
    ) -> None:
        self._settings = settings
        self._urls = central_urls(settings)
        self._url_index = 0
        self._on_alarm_acknowledge = on_alarm_acknowledge
        self._buffer = buffer
        self._device_id = device_id
        self._authorization = basic_credentials(device_id, secret)
        self._backoff = Backoff(
            settings.reconnect_min_delay_s, settings.reconnect_max_delay_s
        )
        self._in_flight: set[int] = set()
        # Loop time since which the oldest unacknowledged message has waited with no
        # acknowledgement at all; None while nothing is in flight.
        self._waiting_since: float | None = None
        self._window_open = asyncio.Event()
        self.connected = asyncio.Event()
        self.sent = 0
        self.acknowledged = 0
        self.rejected = 0
        self.connections = 0

    async def run(self) -> None:
        """Connect, drain and reconnect until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            try:
                await self._run_connection()
            except InvalidStatus as exc:
                status = exc.response.status_code
                if status in (401, 403):
                    logger.warning(
                        "central rejected device %s with HTTP %d; check its credential",
                        self._device_id, status,
                    )
                else:
                    logger.warning("central is unavailable to device %s (HTTP %d)",
                                   self._device_id, status)
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                # Warn when a working link breaks; failed retries are routine then.
                log = logger.warning if self._backoff.attempt == 0 else logger.info
                log("link to central lost for device %s: %s", self._device_id, exc)
            finally:
                self.connected.clear()
                self._in_flight.clear()
                self._waiting_since = None
            if loop.time() - started > STABLE_CONNECTION_S:
                self._backoff.reset()
            self._url_index = (self._url_index + 1) % len(self._urls)
            delay = self._backoff.next_delay()
            logger.info("reconnecting to central in %.1f s", delay)
            await asyncio.sleep(delay)

    @property
    def url(self) -> str:
        """The central URL of the current or next connection attempt."""
        return self._urls[self._url_index]

    async def _run_connection(self) -> None:
        async with connect(
            self.url,
            additional_headers={"Authorization": self._authorization},
            open_timeout=self._settings.connect_timeout_s,
            ping_interval=self._settings.ping_interval_s,
            ping_timeout=self._settings.ping_timeout_s,
            close_timeout=CLOSE_TIMEOUT_S,
            max_size=MAX_FRAME_BYTES,
        ) as websocket:
            self.connections += 1
            self.connected.set()
            logger.info("connected to central at %s as %s", self.url, self._device_id)
            await _first_to_finish(
                self._send_loop(websocket), self._receive_loop(websocket),
                self._watch_acknowledgements(),
            )

    async def _send_loop(self, websocket: ClientConnection) -> None:
        limit = self._settings.max_in_flight
        while True:
            room = limit - len(self._in_flight)
            if room <= 0:
                self._window_open.clear()
                await self._window_open.wait()
                continue
            self._buffer.new_message.clear()
            batch = await self._buffer.next_batch(
                min(room, BATCH_SIZE), exclude=self._in_flight
            )
            if not batch:
                await self._buffer.new_message.wait()
                continue
            if self._waiting_since is None:
                self._waiting_since = asyncio.get_running_loop().time()
            for message in batch:
                self._in_flight.add(message.seq)
                await websocket.send(message.body.decode("utf-8"))
                self.sent += 1

    def unacknowledged_for(self) -> float:
        """Return how long sent messages have waited with no acknowledgement (s)."""
        if self._waiting_since is None:
            return 0.0
        return asyncio.get_running_loop().time() - self._waiting_since

    async def _watch_acknowledgements(self) -> None:
        # A route that silently drops packets leaves the socket open and pings stuck
        # behind unsent data; central's silence while messages wait is the surer sign.
        timeout = self._settings.ack_timeout_s
        while True:
            await asyncio.sleep(min(1.0, timeout / 4))
            waited = self.unacknowledged_for()
            if waited > timeout:
                raise TimeoutError(
                    f"no acknowledgement from central for {waited:.0f} s"
                )

    async def _receive_loop(self, websocket: ClientConnection) -> None:
        async for frame in websocket:
            try:
                reply = decode_central_message(frame)
            except ProtocolError as exc:
                logger.warning("ignoring unreadable message from central: %s", exc)
                continue
            if isinstance(reply, Ack):
                await self._on_ack(reply)
            elif isinstance(reply, Rejected):
                await self._on_rejected(reply)
            elif isinstance(reply, AlarmAcknowledge):
                await self._on_acknowledge(reply)
        # The iteration ends on a clean close; the send loop must stop with it.
        raise ConnectionError("central closed the connection")

    async def _on_ack(self, ack: Ack) -> None:
        await self._buffer.acknowledge(ack.seqs)
        self.acknowledged += len(ack.seqs)
        self._in_flight.difference_update(ack.seqs)
        self._waiting_since = (
            asyncio.get_running_loop().time() if self._in_flight else None
        )
        self._window_open.set()

    async def _on_acknowledge(self, message: AlarmAcknowledge) -> None:
        if self._on_alarm_acknowledge is None:
            logger.warning(
                "ignoring acknowledgement of alarm %s on %s: nothing handles it",
                message.alarm_id, self._device_id,
            )
            return
        await self._on_alarm_acknowledge(message)

    async def _on_rejected(self, rejected: Rejected) -> None:
        self.rejected += 1
        logger.warning(
            "central rejected message seq=%s from %s: %s: %s",
            rejected.seq, self._device_id, rejected.field, rejected.problem,
        )
        if rejected.seq is not None:
            # Resending an identical message would be rejected again forever.
            await self._buffer.move_to_rejected(
                rejected.seq, rejected.field, rejected.problem
            )
            self._in_flight.discard(rejected.seq)
            self._window_open.set()
