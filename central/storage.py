"""Idempotent storage of decoded device messages.

Each message first claims its (device_id, seq) row in ``device_messages``. Only when
that row is new are its children (vitals rows, a waveform chunk or an alarm)
inserted, in the same transaction, so a retransmission stores nothing twice and a
failure stores nothing at all. The patient is resolved from the device's bed when
the batch is stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import asyncpg

from central.devices import DeviceLocation, locate_device, record_hello, touch_last_seen
from central.metrics import RateLimitedLog
from protocol.messages import (
    DataGap,
    DeviceHello,
    DeviceMessage,
    EcgWaveform,
    Emergency,
    VitalsNumerics,
)

logger = logging.getLogger(__name__)
# One warning per device per minute is enough for a clock that stays wrong.
_clock_warnings = RateLimitedLog(logger, interval_s=60.0)
_VITALS_COLUMNS = (
    "device_id", "seq", "ordinal", "patient_id", "code", "value", "unit", "quality",
    "measured_at",
)
_WAVEFORM_COLUMNS = (
    "device_id", "seq", "patient_id", "lead", "sample_rate_hz", "first_sample_at",
    "first_sample_index", "scale_uv", "samples",
)


@dataclass
class StoredBatch:
    """The outcome of one committed batch."""

    location: DeviceLocation
    seqs: list[int] = field(default_factory=list)
    new: list[DeviceMessage] = field(default_factory=list)
    duplicates: int = 0
    # Alarm messages stored but older than a change already stored for the same
    # alarm: the agent sends the newest alarms first after an outage, and relaying
    # an old raise after its clear would show a finished alarm as active.
    superseded: set[int] = field(default_factory=set)


async def store_batch(
    pool: asyncpg.Pool, device_id: str, messages: list[DeviceMessage]
) -> StoredBatch:
    """Store ``messages`` from ``device_id`` in one transaction; return what happened.

    Every returned seq is committed when this returns, duplicates included, so all of
    them may be acknowledged. Claims, numerics and waveform chunks are written with
    one statement each per batch rather than per message, because round trips to the
    database bounded ingest.
    """
    async with pool.acquire() as connection, connection.transaction():
        location = await locate_device(connection, device_id)
        batch = StoredBatch(location)
        claimed = await _claim(connection, device_id, messages, location.patient_id)
        for message in messages:
            batch.seqs.append(message.seq)
            if message.seq in claimed:
                # A seq repeated within the batch is new only the first time.
                claimed.discard(message.seq)
                batch.new.append(message)
            else:
                batch.duplicates += 1
        await _store_bulk_children(connection, batch.new, location.patient_id)
        for message in batch.new:
            await _store_children(connection, message, location)
            if isinstance(message, Emergency) and await _alarm_superseded(
                connection, message
            ):
                batch.superseded.add(message.seq)
        await touch_last_seen(connection, device_id)
    return batch


async def _claim(
    connection: asyncpg.Connection,
    device_id: str,
    messages: list[DeviceMessage],
    patient_id: str | None,
) -> set[int]:
    """Insert the ledger rows of ``messages``; return the seqs that were new."""
    rows = await connection.fetch(
        """
        INSERT INTO device_messages
            (device_id, seq, type, device_time, patient_id, device_clock_suspect)
        SELECT $1, m.seq, m.type, m.device_time, $2,
               m.device_time > clock_timestamp() + interval '5 minutes'
               OR m.device_time < timestamptz '2020-01-01 00:00:00+00'
        FROM unnest($3::bigint[], $4::text[], $5::timestamptz[])
            AS m (seq, type, device_time)
        ON CONFLICT (device_id, seq) DO NOTHING
        RETURNING seq, device_clock_suspect
        """,
        device_id,
        patient_id,
        [message.seq for message in messages],
        [type(message).__struct_config__.tag for message in messages],
        [message.sent_at for message in messages],
    )
    suspect = {row["seq"] for row in rows if row["device_clock_suspect"]}
    for message in messages:
        if message.seq in suspect:
            suspect.discard(message.seq)
            _clock_warnings.warning(
                message.device_id,
                "device %s sent seq %d stamped %s, implausible against central's "
                "clock; check its time synchronisation",
                message.device_id, message.seq, message.sent_at.isoformat(),
            )
    return {row["seq"] for row in rows}


async def _store_bulk_children(
    connection: asyncpg.Connection, new: list[DeviceMessage], patient_id: str | None
) -> None:
    """Insert the vitals rows and waveform chunks of a batch with one COPY each.

    COPY cannot skip conflicting rows, and need not: each message here has just
    claimed its (device_id, seq), so none of its children can exist yet.
    """
    numerics = [m for m in new if isinstance(m, VitalsNumerics)]
    waveforms = [m for m in new if isinstance(m, EcgWaveform)]
    if numerics:
        await _store_numerics(connection, numerics, patient_id)
    if waveforms:
        await _store_waveforms(connection, waveforms, patient_id)


async def _store_children(
    connection: asyncpg.Connection, message: DeviceMessage, location: DeviceLocation
) -> None:
    """Store what a message adds beyond numerics and waveforms, which are bulk."""
    patient_id = location.patient_id
    if isinstance(message, Emergency):
        await _store_alarm(connection, message, patient_id)
    elif isinstance(message, DataGap):
        await _store_gap(connection, message, patient_id)
    elif isinstance(message, DeviceHello):
        await record_hello(
            connection, message.device_id, message.model, message.firmware
        )
        if message.bed is not None and message.bed != location.bed_id:
            logger.warning(
                "device %s reports bed %s but is registered in bed %s; "
                "using the registry",
                message.device_id,
                message.bed,
                location.bed_id,
            )


async def _store_numerics(
    connection: asyncpg.Connection,
    messages: list[VitalsNumerics],
    patient_id: str | None,
) -> None:
    await connection.copy_records_to_table(
        "vitals",
        columns=_VITALS_COLUMNS,
        records=[
            (
                message.device_id,
                message.seq,
                ordinal,
                patient_id,
                item.code,
                item.value,
                item.unit,
                item.quality,
                message.measured_at,
            )
            for message in messages
            for ordinal, item in enumerate(message.measurements)
        ],
    )


async def _store_waveforms(
    connection: asyncpg.Connection, messages: list[EcgWaveform], patient_id: str | None
) -> None:
    await connection.copy_records_to_table(
        "waveform_chunks",
        columns=_WAVEFORM_COLUMNS,
        records=[
            (
                message.device_id,
                message.seq,
                patient_id,
                message.lead,
                message.sample_rate_hz,
                message.first_sample_at,
                message.first_sample_index,
                message.scale_uv,
                message.samples,
            )
            for message in messages
        ],
    )


async def _store_gap(
    connection: asyncpg.Connection, message: DataGap, patient_id: str | None
) -> None:
    logger.warning(
        "device %s discarded %d messages (%d ECG samples) from %s to %s: %s",
        message.device_id, message.messages_dropped, message.sample_count,
        message.first_at.isoformat(), message.last_at.isoformat(), message.reason,
    )
    await connection.execute(
        """
        INSERT INTO data_gaps (device_id, seq, patient_id, reason, lead,
            first_sample_index, sample_count, first_at, last_at, messages_dropped)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        """,
        message.device_id,
        message.seq,
        patient_id,
        message.reason,
        message.lead,
        message.first_sample_index,
        message.sample_count,
        message.first_at,
        message.last_at,
        message.messages_dropped,
    )


async def _alarm_superseded(connection: asyncpg.Connection, message: Emergency) -> bool:
    newer = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM alarms"
        " WHERE device_id = $1 AND alarm_id = $2 AND seq > $3)",
        message.device_id,
        message.alarm_id,
        message.seq,
    )
    return bool(newer)


async def _store_alarm(
    connection: asyncpg.Connection, message: Emergency, patient_id: str | None
) -> None:
    await connection.execute(
        """
        INSERT INTO alarms (device_id, seq, alarm_id, patient_id, kind, priority,
            category, state, started_at, evidence)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
        """,
        message.device_id,
        message.seq,
        message.alarm_id,
        patient_id,
        message.kind,
        message.priority,
        message.category,
        message.state,
        message.started_at,
        message.evidence,
    )
