"""Fan-out of encoded events from ingest to the dashboard clients of each patient.

``EventHub`` is the interface ingest and the events socket use; ``InProcessHub``
delivers within this process. ``central.redis_hub.RedisHub`` wraps one to relay
events between central instances through Redis and feeds the same local
``ClientQueue`` objects.

Publishing never awaits, so a slow dashboard cannot hold up ingest. Each client has
a bounded queue: when it is full, waveform updates for that client are dropped, and
other events (numerics, emergencies, replies) evict the oldest queued waveform
update. A client whose queue is full of events that must not be dropped is closed.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

from central.metrics import Counters, RateLimitedLog

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_CAPACITY = 256


class ClientQueue:
    """Bounded queue of encoded events for one dashboard connection."""

    def __init__(
        self, name: str, counters: Counters, capacity: int = DEFAULT_QUEUE_CAPACITY
    ) -> None:
        self.name = name
        self.capacity = capacity
        self.close_reason: str | None = None
        self._counters = counters
        self._items: deque[tuple[str, bool]] = deque()
        self._ready = asyncio.Event()
        self._drop_log = RateLimitedLog(logger)

    @property
    def closed(self) -> bool:
        return self.close_reason is not None

    def __len__(self) -> int:
        return len(self._items)

    def offer(self, payload: str, *, droppable: bool) -> bool:
        """Queue ``payload`` without waiting; return False if it was not queued."""
        if self.closed:
            return False
        if len(self._items) >= self.capacity and not self._make_room(droppable):
            return False
        self._items.append((payload, droppable))
        self._ready.set()
        return True

    def _make_room(self, droppable: bool) -> bool:
        if droppable:
            self._note_drop("queue full")
            return False
        for index, (_, queued_droppable) in enumerate(self._items):
            if queued_droppable:
                del self._items[index]
                self._note_drop("evicted for an event that must be delivered")
                return True
        self._counters.increment("events.clients_closed_slow")
        logger.warning(
            "closing events client %s: %d undelivered events that must not be dropped",
            self.name,
            len(self._items),
        )
        self.close("client too slow to receive events")
        return False

    def _note_drop(self, reason: str) -> None:
        self._counters.increment("events.waveform_dropped")
        self._drop_log.warning(
            self.name,
            "dropping waveform updates for slow events client %s (%s)",
            self.name,
            reason,
        )

    async def get(self) -> str | None:
        """Wait for the next payload; return None once the queue is closed."""
        while not self._items:
            if self.closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        if self.closed:
            return None
        payload, _ = self._items.popleft()
        return payload

    def close(self, reason: str) -> None:
        if self.close_reason is None:
            self.close_reason = reason
        self._ready.set()


class EventHub(Protocol):
    """Routes encoded events for a patient to the queues subscribed to that patient."""

    def subscribe(self, patient_id: str, queue: ClientQueue) -> None: ...

    def unsubscribe(self, patient_id: str, queue: ClientQueue) -> None: ...

    def remove(self, queue: ClientQueue) -> None: ...

    def publish(self, patient_id: str, payload: str, *, droppable: bool) -> int: ...

    def broadcast(self, payload: str, *, droppable: bool) -> int: ...

    async def start(self) -> None: ...

    def close(self) -> None: ...

    async def wait_closed(self) -> None: ...

    def relay_status(self) -> str: ...


class InProcessHub:
    """EventHub for a single central process."""

    def __init__(self) -> None:
        self._by_patient: dict[str, set[ClientQueue]] = {}

    def subscribe(self, patient_id: str, queue: ClientQueue) -> None:
        self._by_patient.setdefault(patient_id, set()).add(queue)

    def unsubscribe(self, patient_id: str, queue: ClientQueue) -> None:
        queues = self._by_patient.get(patient_id)
        if queues is None:
            return
        queues.discard(queue)
        if not queues:
            del self._by_patient[patient_id]

    def remove(self, queue: ClientQueue) -> None:
        """Drop every subscription of ``queue``."""
        for patient_id in list(self._by_patient):
            self.unsubscribe(patient_id, queue)

    def subscriptions(self, patient_id: str) -> int:
        return len(self._by_patient.get(patient_id, ()))

    def publish(self, patient_id: str, payload: str, *, droppable: bool) -> int:
        """Offer ``payload`` to each subscriber; return how many queued it."""
        delivered = 0
        for queue in list(self._by_patient.get(patient_id, ())):
            if queue.offer(payload, droppable=droppable):
                delivered += 1
        return delivered

    def broadcast(self, payload: str, *, droppable: bool) -> int:
        """Offer ``payload`` once to every subscribed queue; return how many queued it."""
        queues = {queue for group in self._by_patient.values() for queue in group}
        return sum(queue.offer(payload, droppable=droppable) for queue in queues)

    def is_subscribed(self, queue: ClientQueue) -> bool:
        """Return True if ``queue`` has at least one subscription."""
        return any(queue in group for group in self._by_patient.values())

    def patients(self) -> list[str]:
        """Return every patient with at least one subscriber."""
        return list(self._by_patient)

    async def start(self) -> None:
        """Nothing to open for in-process delivery."""

    def close(self) -> None:
        """Close every queue so the sockets they feed end."""
        queues = {queue for group in self._by_patient.values() for queue in group}
        for queue in queues:
            queue.close("server shutting down")
        self._by_patient.clear()

    async def wait_closed(self) -> None:
        """Nothing to wait for in-process."""

    def relay_status(self) -> str:
        """Return "off": events stay within this process."""
        return "off"


def user_channel(user_id: int) -> str:
    """Return the hub key of events addressed to one user rather than one patient.

    Patient ids cannot contain "/", so this key never names a patient.
    """
    return f"user/{user_id}"
