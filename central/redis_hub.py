"""Event fan-out between central instances through Redis pub/sub.

Channels: one per patient, ``<prefix>patient:<patient_id>``. An instance subscribes
to a patient's channel only while one of its dashboard clients watches that patient,
so Redis sends each instance just the events it will deliver. With one channel per
ward, or a fixed set of shard channels, every instance would receive and discard the
vitals of patients nobody on it watches: at 1,000 beds that is most of about 5,000
events a second per instance. Redis pub/sub costs O(subscribers) per PUBLISH and
keeps nothing for a channel nobody subscribes to, so thousands of channels are cheap.
Ordering holds per patient because one connection publishes each instance's events
in order and Redis delivers a channel's messages in the order it received them.

A message is ``<instance id>\\n<d or k>\\n<event JSON>``: ``d`` marks an event that
may be dropped for a slow client (waveforms), ``k`` one that must be kept. The JSON
is the text ingest encoded once, so no instance decodes or re-encodes an event.

Local delivery comes first: ``publish`` offers the event to this instance's queues
at once and queues it for Redis, and the relay ignores its own messages. Redis thus
adds no latency for local clients, and while Redis is down local clients still get
every event from this instance.

Publishing never awaits. Events wait in a bounded outgoing queue that one task sends
in pipelines of up to ``PUBLISH_BATCH`` PUBLISH commands. When that queue is full a
new waveform update is dropped, and any other event evicts the oldest queued waveform
update, or the oldest event when none is queued. Both are counted.

Consent: a remote event reaches only local queues, and a queue subscribes to a
patient through ``central.events`` after consent is checked on this instance, which
also rechecks it. Nothing is delivered on another instance's word.

When the subscriber connection fails, the relay is down: a ``system.alarm`` goes to
local clients, a warning is logged, ``redis.outages`` is counted and /health shows
``"redis": "down"``. Events are not queued for Redis while it is down, because
remote dashboards would receive them as a late burst; they are counted as
``redis.publish_skipped``. The relay reconnects with exponential backoff,
resubscribes, and clears the alarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import secrets
import socket
from collections import deque
from datetime import UTC, datetime

import redis.asyncio as redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from central.config import Settings, mask_url
from central.hub import ClientQueue, EventHub, InProcessHub
from central.metrics import Counters, RateLimitedLog
from protocol.messages import SystemAlarm, encode

logger = logging.getLogger(__name__)

# About 2 s of events from 1,000 beds; beyond that Redis is too slow to be useful
# and the oldest events are stale anyway.
OUTGOING_CAPACITY = 10_000
# PUBLISH commands per pipeline round trip.
PUBLISH_BATCH = 500
# How long the subscriber waits for a message before applying new subscriptions, so
# a new dashboard subscription reaches Redis within this time even when idle.
SUBSCRIBER_POLL_S = 0.05
# Reconnect delays after an outage; the cap keeps recovery within about 10 s.
RECONNECT_MIN_DELAY_S = 0.2
RECONNECT_MAX_DELAY_S = 10.0
# A connection that stays silent longer than this is pinged, so a dead route is found
# even when no events flow.
HEALTH_CHECK_INTERVAL_S = 5
CONNECT_TIMEOUT_S = 2.0
SOCKET_TIMEOUT_S = 5.0
# start() waits this long for the first connection, so an instance that starts with
# Redis up relays from its first request.
FIRST_CONNECT_WAIT_S = 3.0
DROPPABLE, KEEP = "d", "k"


def hub_for(settings: Settings, counters: Counters) -> EventHub:
    """Return the hub this configuration asks for: Redis-backed or in-process."""
    if settings.redis_url is None:
        return InProcessHub()
    return RedisHub(
        settings.redis_url, counters, channel_prefix=settings.redis_channel_prefix
    )


def default_instance_id() -> str:
    """Return an id unique to this process: host name, pid and a random suffix."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


class RedisHub:
    """EventHub that delivers locally and relays to other instances through Redis."""

    def __init__(
        self,
        url: str,
        counters: Counters,
        *,
        channel_prefix: str = "aura:",
        instance_id: str | None = None,
        outgoing_capacity: int = OUTGOING_CAPACITY,
    ) -> None:
        self.local = InProcessHub()
        self.instance_id = instance_id or default_instance_id()
        self._url = url
        self._counters = counters
        self._patient_prefix = f"{channel_prefix}patient:"
        self._control_channel = f"{channel_prefix}control"
        self._outgoing: deque[tuple[str, str, bool]] = deque()
        self._outgoing_capacity = outgoing_capacity
        self._outgoing_ready = asyncio.Event()
        self._subscriptions_changed = True
        self._up = False
        self._alarm: SystemAlarm | None = None
        self._first_attempt = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._warnings = RateLimitedLog(logger)
        # Retries are this module's job, so an outage is seen and reported at once
        # instead of being hidden by the client's own retries.
        self._client = redis.Redis.from_url(
            url,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=SOCKET_TIMEOUT_S,
            health_check_interval=HEALTH_CHECK_INTERVAL_S,
            retry=Retry(NoBackoff(), 0),
        )

    # EventHub interface.

    def subscribe(self, patient_id: str, queue: ClientQueue) -> None:
        # NOTE: the Redis subscription follows within SUBSCRIBER_POLL_S, so events
        # other instances publish in that window do not reach this new subscriber.
        if self._alarm is not None and not self.local.is_subscribed(queue):
            queue.offer(encode(self._alarm).decode(), droppable=False)
        self.local.subscribe(patient_id, queue)
        self._subscriptions_changed = True

    def unsubscribe(self, patient_id: str, queue: ClientQueue) -> None:
        self.local.unsubscribe(patient_id, queue)
        self._subscriptions_changed = True

    def remove(self, queue: ClientQueue) -> None:
        self.local.remove(queue)
        self._subscriptions_changed = True

    def publish(self, patient_id: str, payload: str, *, droppable: bool) -> int:
        """Deliver to local subscribers now and queue for the other instances.

        Returns how many local queues took the event.
        """
        delivered = self.local.publish(patient_id, payload, droppable=droppable)
        if not self._up:
            self._counters.increment("redis.publish_skipped")
            return delivered
        if len(self._outgoing) >= self._outgoing_capacity and not self._make_room(
            droppable
        ):
            return delivered
        flag = DROPPABLE if droppable else KEEP
        message = f"{self.instance_id}\n{flag}\n{payload}"
        self._outgoing.append((self._patient_prefix + patient_id, message, droppable))
        self._outgoing_ready.set()
        return delivered

    def broadcast(self, payload: str, *, droppable: bool) -> int:
        """Offer ``payload`` to every local subscriber; it is not relayed."""
        return self.local.broadcast(payload, droppable=droppable)

    async def start(self) -> None:
        """Start the relay tasks and wait briefly for the first connection."""
        self._tasks = [
            asyncio.create_task(self._subscribe_forever(), name="redis-subscriber"),
            asyncio.create_task(self._publish_forever(), name="redis-publisher"),
        ]
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first_attempt.wait(), FIRST_CONNECT_WAIT_S)

    def close(self) -> None:
        """Close every local queue and stop the relay tasks."""
        self.local.close()
        for task in self._tasks:
            task.cancel()

    async def wait_closed(self) -> None:
        """Wait for the relay tasks to end and close the Redis connections."""
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks = []
        await self._client.aclose()

    def relay_status(self) -> str:
        """Return "ok" while events are relayed through Redis, else "down"."""
        return "ok" if self._up else "down"

    # Outgoing side.

    def _make_room(self, droppable: bool) -> bool:
        self._counters.increment("redis.outgoing_dropped")
        if droppable:
            self._warnings.warning(
                "outgoing", "Redis outgoing queue full; dropping waveform updates"
            )
            return False
        for index, (_, _, queued_droppable) in enumerate(self._outgoing):
            if queued_droppable:
                del self._outgoing[index]
                return True
        self._outgoing.popleft()
        self._warnings.warning(
            "evicted",
            "Redis outgoing queue full of events that must be kept; other instances "
            "miss the oldest",
        )
        return True

    async def _publish_forever(self) -> None:
        while True:
            await self._outgoing_ready.wait()
            if not self._outgoing:
                self._outgoing_ready.clear()
                continue
            count = min(len(self._outgoing), PUBLISH_BATCH)
            batch = [self._outgoing.popleft() for _ in range(count)]
            try:
                async with self._client.pipeline(transaction=False) as pipe:
                    for channel, message, _ in batch:
                        pipe.publish(channel, message)
                    await pipe.execute()
            except (RedisError, OSError) as exc:
                self._counters.increment("redis.publish_failed", len(batch))
                self._warnings.warning(
                    "publish",
                    "could not publish %d events to Redis at %s: %s",
                    len(batch),
                    mask_url(self._url),
                    exc,
                )
                continue
            self._counters.increment("redis.published", len(batch))

    # Incoming side.

    async def _subscribe_forever(self) -> None:
        attempt = 0
        while True:
            try:
                await self._relay_incoming()
            except (RedisError, OSError) as exc:
                # A connection that worked restarts the backoff from the minimum.
                attempt = 0 if self._up else attempt + 1
                self._mark_down(exc)
            except Exception as exc:
                # A bug; without this the relay would stop for good, unnoticed.
                logger.exception("relaying events from Redis failed unexpectedly")
                attempt += 1
                self._mark_down(exc)
            self._first_attempt.set()
            ceiling = min(RECONNECT_MAX_DELAY_S, RECONNECT_MIN_DELAY_S * 2**attempt)
            delay = random.uniform(RECONNECT_MIN_DELAY_S, ceiling)
            logger.info("reconnecting to Redis in %.1f s", delay)
            await asyncio.sleep(delay)

    async def _relay_incoming(self) -> None:
        pubsub = self._client.pubsub(ignore_subscribe_messages=True)
        try:
            # The control channel keeps the connection subscribed even while no
            # local client watches a patient, so an outage is noticed at once.
            await pubsub.subscribe(self._control_channel)
            subscribed: set[str] = set()
            self._subscriptions_changed = True
            await self._sync_subscriptions(pubsub, subscribed)
            self._mark_up()
            self._first_attempt.set()
            while True:
                if self._subscriptions_changed:
                    await self._sync_subscriptions(pubsub, subscribed)
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=SUBSCRIBER_POLL_S
                )
                if message is not None and message["type"] == "message":
                    self._deliver(message["channel"], message["data"])
        finally:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    async def _sync_subscriptions(
        self, pubsub: redis.client.PubSub, subscribed: set[str]
    ) -> None:
        self._subscriptions_changed = False
        desired = {self._patient_prefix + patient for patient in self.local.patients()}
        added = desired - subscribed
        removed = subscribed - desired
        if added:
            await pubsub.subscribe(*added)
        if removed:
            await pubsub.unsubscribe(*removed)
        subscribed.difference_update(removed)
        subscribed.update(added)

    def _deliver(self, channel: str, data: str) -> None:
        if not channel.startswith(self._patient_prefix):
            return
        origin, flag, payload = _split_message(data)
        if origin == self.instance_id:
            return
        if flag not in (DROPPABLE, KEEP):
            self._counters.increment("redis.malformed")
            self._warnings.warning(
                "malformed",
                "ignoring malformed relay message on %s: expected "
                "'<instance>\\n<d|k>\\n<event>'",
                channel,
            )
            return
        self._counters.increment("redis.received")
        patient_id = channel[len(self._patient_prefix) :]
        self.local.publish(patient_id, payload, droppable=flag == DROPPABLE)

    # Technical alarm.

    def _mark_up(self) -> None:
        if self._up:
            return
        self._up = True
        logger.info(
            "relaying events through Redis at %s as instance %s",
            mask_url(self._url),
            self.instance_id,
        )
        if self._alarm is not None:
            cleared = _alarm_state(self._alarm, "cleared")
            self._alarm = None
            self.local.broadcast(encode(cleared).decode(), droppable=False)

    def _mark_down(self, exc: Exception) -> None:
        was_up, self._up = self._up, False
        self._outgoing.clear()
        if self._alarm is not None:
            logger.info("Redis still unreachable: %s", exc)
            return
        self._counters.increment("redis.outages")
        logger.warning(
            "Redis at %s is unreachable (%s); only this instance's events reach its "
            "dashboards until it is back",
            mask_url(self._url),
            exc,
        )
        self._alarm = SystemAlarm(
            instance=self.instance_id,
            alarm_id=f"event-relay-{secrets.token_hex(6)}",
            kind="event_relay_down",
            priority="medium",
            state="raised",
            started_at=datetime.now(UTC),
            evidence=(
                "central cannot reach Redis, so events from beds connected to other "
                "central instances are not shown"
                + ("" if was_up else " (Redis was unreachable at start)")
            ),
        )
        self.local.broadcast(encode(self._alarm).decode(), droppable=False)


def _split_message(data: str) -> tuple[str, str, str]:
    origin, _, rest = data.partition("\n")
    flag, _, payload = rest.partition("\n")
    return origin, flag, payload


def _alarm_state(alarm: SystemAlarm, state: str) -> SystemAlarm:
    return SystemAlarm(
        instance=alarm.instance,
        alarm_id=alarm.alarm_id,
        kind=alarm.kind,
        priority=alarm.priority,
        state=state,  # type: ignore[arg-type]
        started_at=alarm.started_at,
        evidence=alarm.evidence,
    )
