"""Shared steps of the fault rehearsals: run a ward, then audit central row by row.

The audit compares the ``waveform_chunks`` rows of the demo device with what the
simulated board produced. Every row must contain the record's samples at its index,
and the rows must follow each other without overlap. The only holes allowed are the
start offset (samples sent before the agent first opened the port) and the gaps a
scenario names explicitly.
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg
import numpy as np

from demo.stack import DEVICE_ID, Stack
from firmware_sim.config import DEFAULT_FRAME_DURATION_S, DEFAULT_HELLO_INTERVAL_S
from firmware_sim.sources import WfdbReplay

logger = logging.getLogger(__name__)

RECORD_100 = Path(__file__).parents[2] / "firmware_sim" / "recordings" / "100"
SAMPLE_RATE_HZ = 360.0  # MIT-BIH record 100
SPEED = 20.0
# Wall time the agent may take from its start to opening the board's port. What the
# board sends before that is flushed by pyserial and never seen.
STARTUP_ALLOWANCE_S = 6.0
STORE_TIMEOUT_S = 30.0
POLL_INTERVAL_S = 0.2
BOARD_SUMMARY = re.compile(
    r"Board sent (\d+) frames, (\d+) samples; dropped (\d+) frames"
)


async def wait_for(
    predicate: Callable[[], Awaitable[bool]], timeout_s: float, what: str
) -> float:
    """Poll ``predicate`` until true; return the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        if await predicate():
            return time.monotonic() - started
        await asyncio.sleep(POLL_INTERVAL_S)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@asynccontextmanager
async def running_ward(
    workdir: Path, database_url: str, **stack_options: object
) -> AsyncIterator[Stack]:
    """Seed and start central for a ward at ``SPEED``; stop every part afterwards."""
    options: dict[str, object] = {"speed": SPEED, **stack_options}
    ward = Stack(workdir=workdir, database_url=database_url, **options)  # type: ignore[arg-type]
    await asyncio.to_thread(ward.seed)
    await asyncio.to_thread(ward.start_central)
    try:
        yield ward
    finally:
        await asyncio.to_thread(ward.stop_all)


async def start_streaming(ward: Stack) -> None:
    await asyncio.to_thread(ward.start_board)
    ward.start_agent()


@dataclass
class BoardTotals:
    """The board's own counts from its closing log line."""

    frames_sent: int
    samples_sent: int
    frames_dropped: int

    @property
    def samples_produced(self) -> int:
        """Sample index after the last frame the board produced, sent or dropped."""
        return samples_for_frames(self.frames_sent + self.frames_dropped)


def samples_for_frames(frames: int) -> int:
    """Return how many ECG samples the board had produced after ``frames`` frames.

    Each block is one ECG frame of ``DEFAULT_FRAME_DURATION_S``, with a HELLO frame
    in front of the first block and again every ``DEFAULT_HELLO_INTERVAL_S``. The
    board drops whole blocks, so the frame total alone fixes the sample count.
    """
    per_frame = round(SAMPLE_RATE_HZ * DEFAULT_FRAME_DURATION_S)
    hello_every = round(SAMPLE_RATE_HZ * DEFAULT_HELLO_INTERVAL_S)
    counted = 0
    produced = 0
    next_hello = 0
    while counted < frames:
        if produced >= next_hello:
            counted += 1
            next_hello = produced + hello_every
        counted += 1
        produced += per_frame
    assert counted == frames, f"{frames} frames is not a whole number of blocks"
    return produced


def read_board_totals(ward: Stack) -> BoardTotals:
    text = (ward.workdir / "logs" / "board.log").read_text(errors="replace")
    matches = BOARD_SUMMARY.findall(text)
    assert matches, f"the board logged no summary line:\n{text[-2000:]}"
    frames_sent, samples_sent, frames_dropped = (int(n) for n in matches[-1])
    return BoardTotals(frames_sent, samples_sent, frames_dropped)


@dataclass
class ChunkRow:
    seq: int
    first: int
    samples: list[int]

    @property
    def end(self) -> int:
        return self.first + len(self.samples)


async def fetch_chunks(database_url: str) -> list[ChunkRow]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT seq, first_sample_index, samples FROM waveform_chunks"
            " WHERE device_id = $1 ORDER BY first_sample_index, seq",
            DEVICE_ID,
        )
    finally:
        await connection.close()
    return [ChunkRow(r["seq"], r["first_sample_index"], list(r["samples"])) for r in rows]


async def stored_end(database_url: str) -> int:
    connection = await asyncpg.connect(database_url)
    try:
        end = await connection.fetchval(
            "SELECT max(first_sample_index + cardinality(samples)) FROM waveform_chunks"
            " WHERE device_id = $1",
            DEVICE_ID,
        )
    finally:
        await connection.close()
    return int(end or 0)


async def stored_seqs(database_url: str) -> set[int]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT seq FROM device_messages WHERE device_id = $1", DEVICE_ID
        )
    finally:
        await connection.close()
    return {row["seq"] for row in rows}


def buffered_seqs(buffer_path: Path) -> set[int]:
    """Read the seqs still waiting in a stopped agent's SQLite outbox."""
    connection = sqlite3.connect(f"file:{buffer_path}?mode=ro", uri=True)
    try:
        return {seq for (seq,) in connection.execute("SELECT seq FROM outbox")}
    finally:
        connection.close()


@dataclass
class StreamAudit:
    """What central stored for the board's ECG, compared sample index by index."""

    produced: int
    sent: int
    stored: int = 0
    duplicated: int = 0
    start_offset: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)  # (first index, count)
    tail_missing: int = 0
    mismatched_rows: list[int] = field(default_factory=list)  # seqs

    @property
    def gap_samples(self) -> int:
        return sum(count for _, count in self.gaps)

    def line(self, scenario: str) -> str:
        gaps = ", ".join(f"{count} at {first}" for first, count in self.gaps) or "none"
        return (
            f"{scenario}: board sent {self.sent} samples ({self.produced} produced),"
            f" stored {self.stored}, duplicated {self.duplicated},"
            f" start offset {self.start_offset}, gaps {len(self.gaps)} ({gaps}),"
            f" tail missing {self.tail_missing},"
            f" rows unlike the record {len(self.mismatched_rows)}"
        )


def audit_stream(rows: list[ChunkRow], totals: BoardTotals) -> StreamAudit:
    audit = StreamAudit(produced=totals.samples_produced, sent=totals.samples_sent)
    if not rows:
        audit.tail_missing = audit.produced
        return audit
    record = WfdbReplay(RECORD_100, loop=False).samples
    audit.start_offset = rows[0].first
    cursor = rows[0].first
    for row in rows:
        expected = record[row.first:row.end]
        if not np.array_equal(np.asarray(row.samples), expected):
            audit.mismatched_rows.append(row.seq)
        if row.first > cursor:
            audit.gaps.append((cursor, row.first - cursor))
        audit.duplicated += max(0, min(cursor, row.end) - row.first)
        audit.stored += len(row.samples)
        cursor = max(cursor, row.end)
    audit.tail_missing = max(0, audit.produced - cursor)
    return audit


async def finish_and_audit(
    ward: Stack, database_url: str, scenario: str
) -> StreamAudit:
    """Stop the board, wait until its last sample is stored, audit and print it."""
    assert await asyncio.to_thread(ward.stop, "board") == 0
    totals = read_board_totals(ward)

    async def last_sample_stored() -> bool:
        return await stored_end(database_url) >= totals.samples_produced

    try:
        await wait_for(last_sample_stored, STORE_TIMEOUT_S, "the last sample stored")
    except AssertionError:
        logger.warning("%s: the last sample never reached central", scenario)
    audit = audit_stream(await fetch_chunks(database_url), totals)
    print(audit.line(scenario))
    return audit


def assert_intact(audit: StreamAudit, allowed_gaps: int = 0) -> None:
    """Check the audit: record content, no doubles, no hole beyond those allowed."""
    assert audit.stored > 0, "central stored no ECG at all"
    assert not audit.mismatched_rows, (
        f"rows with other samples than the record: seqs {audit.mismatched_rows[:10]}"
    )
    assert audit.duplicated == 0, f"{audit.duplicated} samples stored twice"
    assert audit.start_offset < STARTUP_ALLOWANCE_S * SPEED * SAMPLE_RATE_HZ, (
        f"first stored sample {audit.start_offset} is later than the agent's start-up"
    )
    assert len(audit.gaps) <= allowed_gaps, f"unexpected gaps {audit.gaps}"
    # NOTE: the board counts a frame as sent once it is in the pty and, on SIGTERM,
    # waits at most 0.5 s for the reader to take it. An agent that lags longer than
    # that loses the last frames on the line, not in its buffer.
    assert audit.tail_missing == 0, (
        f"the last {audit.tail_missing} samples the board produced are not stored;"
        " if the agent was busy when the board stopped, they may have been left"
        " unread in the pty"
    )
    expected = audit.produced - audit.start_offset - audit.gap_samples
    assert audit.stored == expected, (
        f"stored {audit.stored} samples, expected {expected}"
    )
