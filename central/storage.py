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

from central.admissions import attribute_messages
from central.devices import (
    DeviceLocation,
    locate_devices,
    record_hello,
    touch_last_seen_many,
)
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
_unattributed_warnings = RateLimitedLog(logger, interval_s=60.0)
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
    # seq -> the patient the message was stored for, or None for an empty bed.
    patients: dict[int, str | None] = field(default_factory=dict)

    def patient_of(self, seq: int) -> str | None:
        return self.patients.get(seq)


async def store_batch(
    pool: asyncpg.Pool, device_id: str, messages: list[DeviceMessage]
) -> StoredBatch:
    """Store ``messages`` from ``device_id`` in one transaction; return what happened.

    Every returned seq is committed when this returns, duplicates included, so all of
    them may be acknowledged.
    """
    [batch] = await store_batches(pool, [(device_id, messages)])
    return batch


async def store_batches(
    pool: asyncpg.Pool, submissions: list[tuple[str, list[DeviceMessage]]]
) -> list[StoredBatch]:
    """Store the messages of several devices in one transaction, in order.

    Returns one ``StoredBatch`` per submission. A device may appear only once.
    Claims, numerics and waveform chunks are written with one statement each for the
    whole transaction rather than per message, because round trips to the database,
    and one COMMIT per message, bounded ingest.
    """
    device_ids = [device_id for device_id, _ in submissions]
    async with pool.acquire() as connection, connection.transaction():
        locations = await locate_devices(connection, device_ids)
        # Each message belongs to the patient whose stay in the device's bed covers
        # its time, so data follows the patient across transfers.
        owners = {
            device_id: await attribute_messages(
                connection, locations[device_id].bed_id, messages
            )
            for device_id, messages in submissions
        }
        claimed = await _claim(connection, submissions, owners)
        batches = []
        for device_id, messages in submissions:
            batch = StoredBatch(locations[device_id], patients=owners[device_id])
            for message in messages:
                batch.seqs.append(message.seq)
                if (device_id, message.seq) in claimed:
                    # A seq repeated within the batch is new only the first time.
                    claimed.discard((device_id, message.seq))
                    batch.new.append(message)
                else:
                    batch.duplicates += 1
            batches.append(batch)
        await _store_bulk_children(
            connection, [m for batch in batches for m in batch.new], owners
        )
        for batch in batches:
            for message in batch.new:
                await _store_children(
                    connection, message, batch.location, batch.patient_of(message.seq)
                )
                if isinstance(message, Emergency) and await _alarm_superseded(
                    connection, message
                ):
                    batch.superseded.add(message.seq)
        await touch_last_seen_many(connection, device_ids)
    for device_id, batch in zip(device_ids, batches):
        _warn_unattributed(device_id, batch)
    return batches


def _warn_unattributed(device_id: str, batch: StoredBatch) -> None:
    unattributed = sum(1 for m in batch.new if batch.patient_of(m.seq) is None)
    if unattributed:
        _unattributed_warnings.warning(
            device_id,
            "device %s in bed %s sent %d messages timed when no patient was in the "
            "bed; stored without a patient",
            device_id, batch.location.bed_id, unattributed,
        )


async def _claim(
    connection: asyncpg.Connection,
    submissions: list[tuple[str, list[DeviceMessage]]],
    owners: dict[str, dict[int, str | None]],
) -> set[tuple[str, int]]:
    """Insert the ledger rows; return the (device_id, seq) pairs that were new."""
    messages = [message for _, batch in submissions for message in batch]
    rows = await connection.fetch(
        """
        INSERT INTO device_messages
            (device_id, seq, type, device_time, patient_id, device_clock_suspect)
        SELECT m.device_id, m.seq, m.type, m.device_time, m.patient_id,
               m.device_time > clock_timestamp() + interval '5 minutes'
               OR m.device_time < timestamptz '2020-01-01 00:00:00+00'
        FROM unnest($1::text[], $2::bigint[], $3::text[], $4::timestamptz[],
                    $5::text[])
            AS m (device_id, seq, type, device_time, patient_id)
        ON CONFLICT (device_id, seq) DO NOTHING
        RETURNING device_id, seq, device_clock_suspect
        """,
        [device_id for device_id, batch in submissions for _ in batch],
        [message.seq for message in messages],
        [type(message).__struct_config__.tag for message in messages],
        [message.sent_at for message in messages],
        [
            owners[device_id][message.seq]
            for device_id, batch in submissions
            for message in batch
        ],
    )
    suspect = {(row["device_id"], row["seq"]) for row in rows if row["device_clock_suspect"]}
    for message in messages:
        if (message.device_id, message.seq) in suspect:
            suspect.discard((message.device_id, message.seq))
            _clock_warnings.warning(
                message.device_id,
                "device %s sent seq %d stamped %s, implausible against central's "
                "clock; check its time synchronisation",
                message.device_id, message.seq, message.sent_at.isoformat(),
            )
    return {(row["device_id"], row["seq"]) for row in rows}


async def _store_bulk_children(
    connection: asyncpg.Connection,
    new: list[DeviceMessage],
    owners: dict[str, dict[int, str | None]],
) -> None:
    """Insert the vitals rows and waveform chunks of new messages with one COPY each.

    COPY cannot skip conflicting rows, and need not: each message here has just
    claimed its (device_id, seq), so none of its children can exist yet.
    """
    numerics = [m for m in new if isinstance(m, VitalsNumerics)]
    waveforms = [m for m in new if isinstance(m, EcgWaveform)]
    if numerics:
        await _store_numerics(connection, numerics, owners)
    if waveforms:
        await _store_waveforms(connection, waveforms, owners)


async def _store_children(
    connection: asyncpg.Connection,
    message: DeviceMessage,
    location: DeviceLocation,
    patient_id: str | None,
) -> None:
    """Store what a message adds beyond numerics and waveforms, which are bulk."""
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
    owners: dict[str, dict[int, str | None]],
) -> None:
    await connection.copy_records_to_table(
        "vitals",
        columns=_VITALS_COLUMNS,
        records=[
            (
                message.device_id,
                message.seq,
                ordinal,
                owners[message.device_id][message.seq],
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
    connection: asyncpg.Connection,
    messages: list[EcgWaveform],
    owners: dict[str, dict[int, str | None]],
) -> None:
    await connection.copy_records_to_table(
        "waveform_chunks",
        columns=_WAVEFORM_COLUMNS,
        records=[
            (
                message.device_id,
                message.seq,
                owners[message.device_id][message.seq],
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
