"""The store-and-forward buffer: every outgoing message is committed here first.

A message exists once its row is committed. Rows leave only when central has
acknowledged them, so a crash, a power cut or a network outage costs nothing but time.
The per-device sequence number lives in the same database and is advanced in the same
transaction as the row it numbers, so it survives restarts without gaps or reuse.
"""

from __future__ import annotations

import asyncio
import logging
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path

import aiosqlite

from edge_agent.dropped import describe_dropped
from protocol.messages import DeviceMessage, encode

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    priority INTEGER NOT NULL,
    kind TEXT NOT NULL,
    body BLOB NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_by_priority ON outbox (priority DESC, seq);
CREATE TABLE IF NOT EXISTS counters (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS local_alarms (
    id INTEGER PRIMARY KEY,
    alarm_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    priority TEXT NOT NULL,
    state TEXT NOT NULL,
    started_at TEXT NOT NULL,
    evidence TEXT NOT NULL,
    recorded_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS rejected (
    seq INTEGER PRIMARY KEY,
    body BLOB NOT NULL,
    field TEXT NOT NULL,
    problem TEXT NOT NULL,
    rejected_at REAL NOT NULL
);
"""

# Alarms and gap reports newest first, so the current state reaches central first
# after an outage; everything else oldest first. ?2 is a JSON array of seqs to skip.
_NEWEST_ALARMS = (
    "SELECT seq, priority, body FROM outbox WHERE priority = ?1"
    " AND seq NOT IN (SELECT value FROM json_each(?2)) ORDER BY seq DESC LIMIT ?3"
)
_OLDEST_OTHERS = (
    "SELECT seq, priority, body FROM outbox WHERE priority < ?1"
    " AND seq NOT IN (SELECT value FROM json_each(?2))"
    " ORDER BY priority DESC, seq LIMIT ?3"
)


WAL_SIZE_LIMIT_BYTES = 4_000_000
# Sequence numbers deleted per statement; below SQLite's default limit of 32,766
# bound parameters.
ACK_SLICE = 500
# Discarding goes down to this fraction of the budget, so it happens in batches
# rather than on every append once the buffer is full.
DISCARD_TO_FRACTION = 0.9


class Priority(IntEnum):
    """Send order after an outage: alarms before numerics before waveforms."""

    WAVEFORM = 0
    NUMERICS = 1
    ALARM = 2


@dataclass(frozen=True)
class PendingMessage:
    seq: int
    priority: Priority
    body: bytes


class SequenceReservation:
    """A high-water mark of sequence numbers kept in a small file beside the buffer.

    Numbers are reserved in blocks, one fsync per block. If the buffer file is lost
    or corrupt, numbering restarts above the last reserved block, so central never
    takes a new message for a resend of an old one (it stores by device and seq).
    """

    BLOCK = 10_000

    def __init__(self, path: Path) -> None:
        self._path = path
        self._reserved_below: int | None = None

    def floor(self) -> int:
        """Return the first number that was certainly never used."""
        try:
            return int(self._path.read_text().strip() or 0)
        except FileNotFoundError:
            return 0
        except ValueError as exc:
            raise sqlite3.DatabaseError(f"{self._path} is unreadable: {exc}") from exc

    def covers(self, seq: int) -> bool:
        return self._reserved_below is not None and seq < self._reserved_below

    def cover(self, seq: int) -> None:
        """Make sure ``seq`` lies below the mark on disk before it is used."""
        if self._reserved_below is None:
            self._reserved_below = self.floor()
        if seq < self._reserved_below:
            return
        mark = seq + self.BLOCK
        temporary = self._path.with_name(self._path.name + ".tmp")
        with open(temporary, "w") as file:
            file.write(f"{mark}\n")
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self._path)
        self._reserved_below = mark


class MessageBuffer:
    """SQLite (WAL) outbox with a durable sequence counter."""

    def __init__(self, path: str | Path, max_payload_bytes: int | None = None) -> None:
        self._path = Path(path)
        # Over this many bytes of unsent messages, the oldest waveforms are discarded
        # first, then numerics; alarms and gap reports are kept.
        self.max_payload_bytes = max_payload_bytes
        self.payload_bytes = 0
        self.dropped_messages = 0
        self.dropped_samples = 0
        self._db: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()
        self.new_message = asyncio.Event()
        # Set when open() found a corrupt file; the agent raises a technical alarm.
        self.corrupt_file_moved_to: Path | None = None
        # Messages central has committed but whose rows could not be deleted yet
        # (disk full: even a DELETE must write the WAL). They are not sent again and
        # their deletion is retried with the next acknowledgement.
        self._acknowledged_undeleted: set[int] = set()
        self._reservation = SequenceReservation(
            self._path.with_name(self._path.name + ".seq")
        )

    async def open(self) -> None:
        """Open the buffer; a corrupt file is moved aside and a fresh one started."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        try:
            await self._open_file()
        except sqlite3.DatabaseError as exc:
            if self._db is not None:
                await self._db.close()
                self._db = None
            aside = self._path.with_name(
                f"{self._path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}"
            )
            for suffix in ("", "-wal", "-shm"):
                source = Path(f"{self._path}{suffix}")
                if source.exists():
                    source.rename(f"{aside}{suffix}")
            self.corrupt_file_moved_to = aside
            logger.error("buffer %s is corrupt (%s); moved it to %s and started empty",
                         self._path, exc, aside)
            await self._open_file()

    async def _open_file(self) -> None:
        self._db = await aiosqlite.connect(self._path)
        # FULL makes each commit durable across a power cut, which is the point of
        # this buffer. It still commits about 1,000 messages a second on the 2-core
        # test machine (benchmarks/buffer_drain.py), against 5 a second per bed.
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=FULL")
        # Without a limit the write-ahead log keeps its largest size after a
        # checkpoint, several times the budget of a small buffer.
        await self._db.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        await self._db.executescript(_SCHEMA)
        await self._db.execute(
            "INSERT OR IGNORE INTO counters (name, value) VALUES ('next_seq', ?)",
            (self._reservation.floor(),),
        )
        await self._db.commit()
        # A file that is damaged past its header may open but fail on first read.
        async with self._db.execute("PRAGMA quick_check") as cursor:
            row = await cursor.fetchone()
        if row is None or row[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {row}")
        async with self._db.execute(
            "SELECT coalesce(sum(length(body)), 0) FROM outbox"
        ) as cursor:
            total = await cursor.fetchone()
        self.payload_bytes = int(total[0]) if total else 0
        pending = await self.pending_count()
        logger.info("buffer %s open, %d messages waiting to be sent", self._path, pending)
        if pending:
            self.new_message.set()

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    @property
    def db(self) -> aiosqlite.Connection:
        if self._db is None:
            raise RuntimeError("buffer is not open")
        return self._db

    async def append(
        self, build: Callable[[int], DeviceMessage], priority: Priority
    ) -> DeviceMessage:
        """Number a message with the next sequence, commit it and return it.

        ``build`` receives the sequence number, so the message and its number are
        created together inside the transaction that reserves the number.
        """
        async with self._lock:
            async with self.db.execute(
                "SELECT value FROM counters WHERE name = 'next_seq'"
            ) as cursor:
                row = await cursor.fetchone()
            assert row is not None  # inserted in open()
            message = await self._insert(int(row[0]), build, priority)
            if self.max_payload_bytes and self.payload_bytes > self.max_payload_bytes:
                await self._discard_oldest()
            await self.db.commit()
        self.new_message.set()
        return message

    async def _insert(
        self, seq: int, build: Callable[[int], DeviceMessage], priority: Priority
    ) -> DeviceMessage:
        if not self._reservation.covers(seq):
            await asyncio.to_thread(self._reservation.cover, seq)
        message = build(seq)
        body = encode(message)
        await self.db.execute(
            "INSERT INTO outbox (seq, priority, kind, body, created_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (seq, int(priority), type(message).__name__, body, time.time()),
        )
        await self.db.execute(
            "UPDATE counters SET value = ? WHERE name = 'next_seq'", (seq + 1,)
        )
        self.payload_bytes += len(body)
        return message

    async def _discard_oldest(self) -> None:
        """Free a tenth of the budget, oldest waveforms first; report it as gaps."""
        assert self.max_payload_bytes is not None
        to_free = self.payload_bytes - int(self.max_payload_bytes * DISCARD_TO_FRACTION)
        async with self.db.execute(
            "SELECT seq, body FROM outbox WHERE priority < ? ORDER BY priority, seq",
            (int(Priority.ALARM),),
        ) as cursor:
            victims: list[tuple[int, bytes]] = []
            freed = 0
            async for seq, body in cursor:
                if freed >= to_free:
                    break
                victims.append((int(seq), bytes(body)))
                freed += len(body)
        if not victims:
            return
        await self.db.executemany(
            "DELETE FROM outbox WHERE seq = ?", [(seq,) for seq, _ in victims]
        )
        self.payload_bytes -= freed
        gaps = describe_dropped(body for _, body in victims)
        for build_gap in gaps:
            async with self.db.execute(
                "SELECT value FROM counters WHERE name = 'next_seq'"
            ) as cursor:
                row = await cursor.fetchone()
            assert row is not None
            gap = await self._insert(int(row[0]), build_gap, Priority.ALARM)
            self.dropped_samples += gap.sample_count  # type: ignore[union-attr]
        self.dropped_messages += len(victims)
        logger.warning(
            "buffer %s over its %d byte budget: discarded %d oldest messages; "
            "%d discarded since start", self._path, self.max_payload_bytes,
            len(victims), self.dropped_messages,
        )

    async def next_batch(
        self, limit: int, exclude: Iterable[int] = ()
    ) -> list[PendingMessage]:
        """Return up to ``limit`` unacknowledged messages: alarms newest first, then
        numerics and waveforms oldest first."""
        # The excluded (in-flight) messages are filtered in SQL, so each call reads
        # only the rows it returns, not their bodies too: after a long outage the
        # uplink calls this thousands of times over a large outbox.
        excluded = json.dumps(sorted({*exclude, *self._acknowledged_undeleted}))
        batch: list[PendingMessage] = []
        for query in (_NEWEST_ALARMS, _OLDEST_OTHERS):
            if len(batch) >= limit:
                break
            async with self.db.execute(
                query, (int(Priority.ALARM), excluded, limit - len(batch))
            ) as cursor:
                batch += [
                    PendingMessage(int(seq), Priority(priority), bytes(body))
                    for seq, priority, body in await cursor.fetchall()
                ]
        return batch

    @property
    def undeleted_acknowledged(self) -> int:
        """Count of acknowledged messages still on disk because deleting them failed."""
        return len(self._acknowledged_undeleted)

    async def acknowledge(self, seqs: Iterable[int]) -> int:
        """Forget messages central has committed; return how many rows went.

        When the file cannot be written (disk full, I/O error) the rows stay, the
        messages are not offered again, and the deletion is retried with the next
        acknowledgement, so a full disk never stops the link.
        """
        keys = sorted({int(seq) for seq in seqs} | self._acknowledged_undeleted)
        if not keys:
            return 0
        removed = 0
        freed = 0
        async with self._lock:
            try:
                # One statement per slice, not per sequence number: each statement is
                # a round trip to aiosqlite's thread.
                for start in range(0, len(keys), ACK_SLICE):
                    slice_ = keys[start:start + ACK_SLICE]
                    marks = ",".join("?" * len(slice_))
                    async with self.db.execute(
                        f"DELETE FROM outbox WHERE seq IN ({marks})"
                        " RETURNING length(body)",
                        slice_,
                    ) as cursor:
                        for (length,) in await cursor.fetchall():
                            freed += int(length)
                            removed += 1
                await self.db.commit()
            except (sqlite3.Error, OSError) as exc:
                await self._rollback_quietly()
                if not self._acknowledged_undeleted:
                    logger.warning(
                        "could not delete %d acknowledged messages from %s (%s); "
                        "keeping them unsent and retrying with the next ack",
                        len(keys), self._path, exc,
                    )
                self._acknowledged_undeleted.update(keys)
                return 0
        self.payload_bytes -= freed
        if self._acknowledged_undeleted:
            logger.info(
                "deleted %d acknowledged messages kept since the buffer could not "
                "be written", len(self._acknowledged_undeleted),
            )
            self._acknowledged_undeleted.clear()
        return removed

    async def _rollback_quietly(self) -> None:
        try:
            await self.db.rollback()
        except (sqlite3.Error, OSError) as exc:
            logger.debug("rollback after a failed write also failed: %s", exc)

    async def move_to_rejected(self, seq: int, field: str, problem: str) -> None:
        """Keep a message central refused for inspection instead of resending it."""
        async with self._lock:
            await self.db.execute(
                "INSERT OR REPLACE INTO rejected (seq, body, field, problem, rejected_at)"
                " SELECT seq, body, ?, ?, ? FROM outbox WHERE seq = ?",
                (field, problem, time.time(), seq),
            )
            async with self.db.execute(
                "DELETE FROM outbox WHERE seq = ? RETURNING length(body)", (seq,)
            ) as cursor:
                for (length,) in await cursor.fetchall():
                    self.payload_bytes -= int(length)
            await self.db.commit()

    async def record_alarm(
        self, alarm_id: str, kind: str, priority: str, state: str, started_at: str,
        evidence: str,
    ) -> None:
        """Store an alarm change locally so the bedside has it without the network."""
        async with self._lock:
            await self.db.execute(
                "INSERT INTO local_alarms"
                " (alarm_id, kind, priority, state, started_at, evidence, recorded_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (alarm_id, kind, priority, state, started_at, evidence, time.time()),
            )
            await self.db.commit()

    async def pending_count(self) -> int:
        async with self.db.execute("SELECT count(*) FROM outbox") as cursor:
            row = await cursor.fetchone()
        count = int(row[0]) if row else 0
        return max(0, count - len(self._acknowledged_undeleted))

    async def next_sequence(self) -> int:
        async with self.db.execute(
            "SELECT value FROM counters WHERE name = 'next_seq'"
        ) as cursor:
            row = await cursor.fetchone()
        return int(row[0]) if row else 0

