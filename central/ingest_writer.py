"""Group commit: batches from many device connections share one transaction.

At 1,000 beds each device connection sends about five messages a second, one at a
time, so a transaction per connection batch means a COMMIT, and its round trips, for
nearly every message. Instead a connection hands its batch to ``IngestWriter.store``
and waits. While fewer than ``MAX_CONCURRENT_WRITES`` transactions run, a new one
takes every batch waiting, up to ``MAX_GROUP_MESSAGES`` messages. Batches that arrive
meanwhile wait until a transaction ends, and the next one takes them all. So an idle
central still stores a lone message at once, and a busy one commits less often.

Nothing is acknowledged before its transaction commits, as before. If a group's
transaction fails, each batch of it is tried again in a transaction of its own, so
one device whose messages cannot be stored does not fail the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from dataclasses import dataclass

import asyncpg

from central.metrics import Counters
from central.storage import StoredBatch, store_batches
from protocol.messages import DeviceMessage

logger = logging.getLogger(__name__)

# Concurrent transactions; the pool has 10 connections and REST requests need some.
MAX_CONCURRENT_WRITES = 4
# Messages per group transaction; 1,000 beds send about 5,000 a second.
MAX_GROUP_MESSAGES = 1024
STORAGE_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@dataclass
class _Submission:
    device_id: str
    messages: list[DeviceMessage]
    future: asyncio.Future[StoredBatch]


class IngestWriter:
    """Stores the batches of all device connections, grouped into transactions."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        counters: Counters,
        *,
        max_concurrent: int = MAX_CONCURRENT_WRITES,
        max_group_messages: int = MAX_GROUP_MESSAGES,
    ) -> None:
        self._pool = pool
        self._counters = counters
        self._pending: deque[_Submission] = deque()
        self._max_concurrent = max_concurrent
        self._active = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._max_group_messages = max_group_messages

    async def store(self, device_id: str, messages: list[DeviceMessage]) -> StoredBatch:
        """Store one connection's batch; return when its transaction has committed.

        Raises what ``store_batches`` raises when the batch cannot be stored.
        """
        future: asyncio.Future[StoredBatch] = asyncio.get_running_loop().create_future()
        self._pending.append(_Submission(device_id, messages, future))
        self._start_writes()
        return await future

    def _start_writes(self) -> None:
        # Each write runs in its own task, so a connection that is cancelled while it
        # waits cannot cancel a transaction holding other connections' batches.
        while self._active < self._max_concurrent and self._pending:
            group = self._take_group()
            if not group:
                return
            self._active += 1
            task = asyncio.create_task(self._write_then_continue(group))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _write_then_continue(self, group: list[_Submission]) -> None:
        try:
            await self._write(group)
        finally:
            self._active -= 1
            self._start_writes()

    def _take_group(self) -> list[_Submission]:
        group: list[_Submission] = []
        devices: set[str] = set()
        deferred: list[_Submission] = []
        count = 0
        while self._pending:
            submission = self._pending.popleft()
            if submission.future.done():
                continue  # its connection was cancelled while waiting
            if submission.device_id in devices:
                # A device that reconnected may have a second batch waiting; it goes
                # into the next transaction, after the first.
                deferred.append(submission)
                continue
            if group and count + len(submission.messages) > self._max_group_messages:
                deferred.append(submission)
                break
            group.append(submission)
            devices.add(submission.device_id)
            count += len(submission.messages)
        self._pending.extendleft(reversed(deferred))
        return group

    async def _write(self, group: list[_Submission]) -> None:
        # Messages over transactions is the mean group size, shown at /metrics.
        self._counters.increment("ingest.transactions")
        self._counters.increment("ingest.transaction_messages", _message_count(group))
        try:
            batches = await store_batches(
                self._pool, [(item.device_id, item.messages) for item in group]
            )
        except STORAGE_ERRORS as exc:
            if len(group) == 1:
                _settle(group[0], exception=exc)
                return
            logger.warning(
                "storing %d device batches together failed (%s); storing each alone",
                len(group),
                exc,
            )
            for item in group:
                await self._write_alone(item)
        except Exception as exc:
            # A bug, not a database failure; the waiting connections must hear of
            # it, or they would wait forever.
            logger.exception("storing %d device batches failed", len(group))
            for item in group:
                _settle(item, exception=exc)
        else:
            for item, batch in zip(group, batches, strict=True):
                _settle(item, result=batch)

    async def _write_alone(self, item: _Submission) -> None:
        try:
            [batch] = await store_batches(self._pool, [(item.device_id, item.messages)])
        except STORAGE_ERRORS as exc:
            _settle(item, exception=exc)
        else:
            _settle(item, result=batch)


def _message_count(group: list[_Submission]) -> int:
    return sum(len(item.messages) for item in group)


def _settle(
    item: _Submission,
    *,
    result: StoredBatch | None = None,
    exception: BaseException | None = None,
) -> None:
    if item.future.done():
        return
    if exception is not None:
        item.future.set_exception(exception)
    else:
        assert result is not None
        item.future.set_result(result)
