"""Idempotent storage of decoded device messages.

Each message first claims its (device_id, seq) row in ``device_messages``. Only when
that row is new are its children (vitals rows, a waveform chunk or an alarm)
inserted, in the same transaction, so a retransmission stores nothing twice and a
failure stores nothing at all. Each message belongs to the patient whose stay in the
device's bed covers the message's time (``central.admissions``), so data buffered
before a transfer stays with the patient who was in the bed then. A message from a
bed that was empty at that time is stored with no patient: it is kept, but no
patient's record shows it and no dashboard receives it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import asyncpg

from central.admissions import attribute_messages
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
_unattributed_warnings = RateLimitedLog(logger, interval_s=60.0)


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
    async with pool.acquire() as connection, connection.transaction():
        location = await locate_device(connection, device_id)
        owners = await attribute_messages(connection, location.bed_id, messages)
        batch = StoredBatch(location, patients=owners)
        for message in messages:
            patient_id = owners[message.seq]
            if await _claim(connection, message, patient_id):
                await _store_children(connection, message, location, patient_id)
                batch.new.append(message)
                if isinstance(message, Emergency) and await _alarm_superseded(
                    connection, message
                ):
                    batch.superseded.add(message.seq)
            else:
                batch.duplicates += 1
            batch.seqs.append(message.seq)
        await touch_last_seen(connection, device_id)
    unattributed = sum(1 for message in batch.new if owners[message.seq] is None)
    if unattributed:
        _unattributed_warnings.warning(
            device_id,
            "device %s in bed %s sent %d messages timed when no patient was in the "
            "bed; stored without a patient",
            device_id, location.bed_id, unattributed,
        )
    return batch


async def _claim(
    connection: asyncpg.Connection, message: DeviceMessage, patient_id: str | None
) -> bool:
    inserted = await connection.fetchval(
        """
        INSERT INTO device_messages
            (device_id, seq, type, device_time, patient_id, device_clock_suspect)
        VALUES ($1, $2, $3, $4, $5,
                $4 > clock_timestamp() + interval '5 minutes'
                OR $4 < timestamptz '2020-01-01 00:00:00+00')
        ON CONFLICT (device_id, seq) DO NOTHING
        RETURNING device_clock_suspect
        """,
        message.device_id,
        message.seq,
        type(message).__struct_config__.tag,
        message.sent_at,
        patient_id,
    )
    if inserted is None:
        return False
    if inserted:
        _clock_warnings.warning(
            message.device_id,
            "device %s sent seq %d stamped %s, implausible against central's clock;"
            " check its time synchronisation",
            message.device_id, message.seq, message.sent_at.isoformat(),
        )
    return True


async def _store_children(
    connection: asyncpg.Connection,
    message: DeviceMessage,
    location: DeviceLocation,
    patient_id: str | None,
) -> None:
    if isinstance(message, VitalsNumerics):
        await _store_numerics(connection, message, patient_id)
    elif isinstance(message, EcgWaveform):
        await _store_waveform(connection, message, patient_id)
    elif isinstance(message, Emergency):
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
    connection: asyncpg.Connection, message: VitalsNumerics, patient_id: str | None
) -> None:
    await connection.executemany(
        """
        INSERT INTO vitals (device_id, seq, ordinal, patient_id, code, value, unit,
                            quality, measured_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        """,
        [
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
            for ordinal, item in enumerate(message.measurements)
        ],
    )


async def _store_waveform(
    connection: asyncpg.Connection, message: EcgWaveform, patient_id: str | None
) -> None:
    await connection.execute(
        """
        INSERT INTO waveform_chunks (device_id, seq, patient_id, lead, sample_rate_hz,
            first_sample_at, first_sample_index, scale_uv, samples)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        """,
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
