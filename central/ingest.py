"""The device WebSocket (/ingest): authenticate, store idempotently, ack after commit.

A device authenticates with HTTP Basic on the upgrade request. Each text frame is one
protocol device message. Frames that arrive together form a batch of at most
``MAX_BATCH`` messages. A batch is stored in one transaction, which other devices'
batches may share (see ``central.ingest_writer``). Only after COMMIT does the device
get an ``Ack`` listing every seq of the batch, duplicates included. A malformed frame gets a
``Rejected`` reply and the connection stays open. If storing fails, nothing of the
batch is acknowledged and the socket is closed with 1011 so the device retries.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re

import asyncpg
from starlette.responses import JSONResponse
from starlette.websockets import WebSocket, WebSocketDisconnect

from central.acknowledgements import deliver_pending
from central.audit import Actor
from central.devices import DeviceAuthError, authenticate_device
from central.fanout import publish_stored
from central.metrics import RateLimitedLog
from central.services import Services, services_of
from protocol.errors import ProtocolError
from protocol.messages import (
    Ack,
    DeviceHello,
    DeviceMessage,
    EcgWaveform,
    Emergency,
    Measurement,
    Rejected,
    VitalsNumerics,
    decode_device_message,
    encode,
    peek_sequence,
)

logger = logging.getLogger(__name__)

# Messages per batch. Each batch's events reach every subscribed client's queue
# (central.hub, 256 events) at once, so a batch must stay well below that size or a
# burst alone would drop waveforms. Transactions still hold more than one batch
# under load, because central.ingest_writer groups the batches of all devices.
MAX_BATCH = 64
RECEIVE_QUEUE_FRAMES = 256
CLOSE_POLICY_VIOLATION = 1008
CLOSE_INTERNAL_ERROR = 1011
CLOSE_TRY_AGAIN_LATER = 1013
_INDEX = re.compile(r"\[\d+\]")
_rejection_log = RateLimitedLog(logger)
_database_warnings = RateLimitedLog(logger)
# Field names a rejection may name. Any other name is an unknown field chosen by the
# sender, so it is counted as "unknown_field" and a device cannot create counters.
_KNOWN_FIELDS = frozenset(
    {"message", "type"}
    | {
        name
        for struct in (DeviceHello, VitalsNumerics, EcgWaveform, Emergency, Measurement)
        for name in struct.__struct_fields__
    }
)


def rejection_reason(field: str) -> str:
    """Return the counter suffix for a rejected ``field``, without list indices."""
    reason = _INDEX.sub("[]", field)
    parts = reason.replace("[]", "").split(".")
    return reason if all(part in _KNOWN_FIELDS for part in parts) else "unknown_field"


async def ingest_endpoint(websocket: WebSocket) -> None:
    """Serve one device connection from upgrade to close."""
    services = services_of(websocket)
    try:
        device_id = await authenticate_device(
            services.pool, websocket.headers.get("authorization")
        )
    except DeviceAuthError as exc:
        await _reject_device(services, websocket, exc)
        return
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        # The database is down or restarting: not the device's fault, so report that and
        # let it retry, rather than fail with a 500 that reads like a bad credential.
        services.counters.increment("ingest.database_unavailable")
        _database_warnings.warning(
            "database", "cannot check device credentials, database unavailable: %s", exc
        )
        await _deny(websocket, 503, "database unavailable; retry later",
                    CLOSE_TRY_AGAIN_LATER)
        return
    await websocket.accept()
    session = IngestSession(services, websocket, device_id)
    try:
        await session.start()
        await session.run()
    finally:
        await session.finish()


async def _reject_device(
    services: Services, websocket: WebSocket, exc: DeviceAuthError
) -> None:
    services.counters.increment("ingest.auth_refused")
    client = websocket.client.host if websocket.client else "unknown"
    logger.warning(
        "rejected device connection from %s as %s: %s",
        client,
        exc.claimed_id,
        exc.reason,
    )
    await services.audit.record(
        services.pool,
        Actor.anonymous(exc.claimed_id),
        "device.connect",
        outcome="refused",
        detail={"reason": exc.reason, "client": client},
    )
    # The specific reason goes only to the log and the audit row, so a caller cannot
    # probe which device ids exist. A rotated-out credential is the exception: its
    # holder proved it once had a valid one, and needs to know to fetch the new one.
    message = "invalid device credentials"
    if exc.rotated_out:
        services.counters.increment("ingest.auth_refused.rotated_out")
        message = (
            "device credential was rotated; install the new credential issued by "
            "biomedical engineering"
        )
    await _deny(websocket, 401, message, CLOSE_POLICY_VIOLATION,
                {"WWW-Authenticate": 'Basic realm="aura-ingest"'})


async def _deny(
    websocket: WebSocket, status: int, message: str, close_code: int,
    headers: dict[str, str] | None = None,
) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        body = {"status": status, "error": message}
        await websocket.send_denial_response(
            JSONResponse(body, status_code=status, headers=headers)
        )
    else:
        await websocket.close(close_code)


class IngestSession:
    """One authenticated device connection and its counts."""

    def __init__(
        self, services: Services, websocket: WebSocket, device_id: str
    ) -> None:
        self.services = services
        self.websocket = websocket
        self.device_id = device_id
        self.stored = 0
        self.duplicates = 0
        self.rejected = 0
        self._frames: asyncio.Queue[str | bytes | None] = asyncio.Queue(
            RECEIVE_QUEUE_FRAMES
        )
        self._closing = False
        # Acks, rejections and requests' acknowledgements come from different tasks.
        self._send_lock = asyncio.Lock()
        self._closed = False

    async def start(self) -> None:
        self.services.counters.increment("ingest.connections")
        logger.info("device %s connected", self.device_id)
        await self.services.audit.record(
            self.services.pool, Actor.device(self.device_id), "device.connect"
        )
        # Registered before the pending rows are read, so an acknowledgement stored
        # meanwhile is either sent by its request or found here.
        self.services.device_links.register(self)
        try:
            await deliver_pending(self.services, self)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            logger.error(
                "could not send pending alarm acknowledgements to device %s; they "
                "stay queued for its next connection: %s",
                self.device_id,
                exc,
            )

    async def send_to_device(self, text: str) -> bool:
        """Send one frame to the device; return False if the connection is gone."""
        async with self._send_lock:
            if self._closed:
                return False
            try:
                await self.websocket.send_text(text)
            except (WebSocketDisconnect, RuntimeError, OSError) as exc:
                logger.info("could not send to device %s: %r", self.device_id, exc)
                return False
        return True

    async def disconnect(self, reason: str) -> None:
        """Close the connection with 1008, as after a credential rotation."""
        async with self._send_lock:
            if self._closed:
                return
            self._closed = True
            logger.info(
                "closing the connection of device %s: %s", self.device_id, reason
            )
            with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                await self.websocket.close(CLOSE_POLICY_VIOLATION, reason)

    async def finish(self) -> None:
        self._closed = True
        self.services.device_links.unregister(self)
        counts = {
            "stored": self.stored,
            "duplicates": self.duplicates,
            "rejected": self.rejected,
        }
        logger.info("device %s disconnected: %s", self.device_id, counts)
        try:
            await self.services.audit.record(
                self.services.pool,
                Actor.device(self.device_id),
                "device.disconnect",
                detail=counts,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            logger.error(
                "could not audit disconnect of device %s: %s", self.device_id, exc
            )

    async def run(self) -> None:
        reader = asyncio.create_task(self._read_frames())
        try:
            while (batch := await self._next_batch()) is not None:
                if not await self._process(batch):
                    break
        except WebSocketDisconnect:
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect):
                await reader

    async def _read_frames(self) -> None:
        # A full queue stops this reader, which pushes back on the device over TCP.
        try:
            while True:
                frame = await self.websocket.receive()
                if frame["type"] == "websocket.disconnect":
                    break
                text = frame.get("text")
                await self._frames.put(
                    text if text is not None else frame.get("bytes", b"")
                )
        except asyncio.CancelledError:
            raise
        except Exception:
            # This task has no caller to raise to; without the log and the end
            # marker below, the session would wait for frames forever.
            logger.exception("receiving from device %s failed", self.device_id)
        await self._frames.put(None)

    async def _next_batch(self) -> list[str | bytes] | None:
        if self._closing:
            return None
        first = await self._frames.get()
        if first is None:
            return None
        batch = [first]
        while len(batch) < MAX_BATCH and not self._frames.empty():
            frame = self._frames.get_nowait()
            if frame is None:
                self._closing = True
                break
            batch.append(frame)
        return batch

    async def _process(self, frames: list[str | bytes]) -> bool:
        """Store a batch and acknowledge it; return False if the socket must close."""
        messages = []
        for frame in frames:
            message = await self._decode_or_reject(frame)
            if message is not None:
                messages.append(message)
        if not messages:
            return True
        try:
            batch = await self.services.ingest_writer.store(self.device_id, messages)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            await self._storage_failed(exc, len(messages))
            return False
        self.stored += len(batch.new)
        self.duplicates += batch.duplicates
        self.services.counters.increment("ingest.stored", len(batch.new))
        self.services.counters.increment("ingest.duplicates", batch.duplicates)
        # Published before the ack is sent, because sending fails when the device has
        # already disconnected, and what is committed must reach dashboards anyway.
        publish_stored(self.services.hub, self.device_id, batch)
        async with self._send_lock:
            # After disconnect() no ack goes out; the device resends the batch later
            # and central acknowledges it then as duplicates.
            if not self._closed:
                await self.websocket.send_text(encode(Ack(seqs=batch.seqs)).decode())
        return not self._closed

    async def _decode_or_reject(self, frame: str | bytes) -> DeviceMessage | None:
        try:
            if isinstance(frame, bytes):
                raise ProtocolError(
                    "message", "binary frames are not accepted; send JSON text"
                )
            message = decode_device_message(frame)
            if message.device_id != self.device_id:
                raise ProtocolError(
                    "device_id",
                    f"message names device {message.device_id!r} but this connection "
                    f"is authenticated as {self.device_id!r}",
                )
        except ProtocolError as exc:
            seq = peek_sequence(frame) if isinstance(frame, str) else None
            await self._reject(seq, exc)
            return None
        return message

    async def _reject(self, seq: int | None, exc: ProtocolError) -> None:
        self.rejected += 1
        reason = rejection_reason(exc.field)
        self.services.counters.increment(f"ingest.rejected.{reason}")
        _rejection_log.warning(
            (self.device_id, reason),
            "rejected message seq %s from device %s: %s: %s",
            seq,
            self.device_id,
            exc.field,
            exc.problem,
        )
        reply = Rejected(seq=seq, field=exc.field, problem=exc.problem)
        async with self._send_lock:
            if not self._closed:
                await self.websocket.send_text(encode(reply).decode())

    async def _storage_failed(self, exc: Exception, count: int) -> None:
        self.services.counters.increment("ingest.store_failed")
        logger.error(
            "could not store %d messages from device %s, closing so it resends: %s",
            count,
            self.device_id,
            exc,
        )
        self._closed = True
        with contextlib.suppress(WebSocketDisconnect, RuntimeError):
            await self.websocket.close(CLOSE_INTERNAL_ERROR, "storage unavailable")
