"""Turn newly stored device messages into dashboard events and publish them.

Each event is encoded once and the same text goes to every subscriber of the
patient. Waveform updates may be dropped for a slow client; numerics and
emergencies are not dropped (see ``central.hub``).
"""

from __future__ import annotations

import logging

import msgspec

from central.devices import DeviceLocation
from central.hub import EventHub
from central.storage import StoredBatch
from protocol.messages import (
    DeviceMessage,
    EcgWaveform,
    Emergency,
    PatientEmergency,
    VitalsNumerics,
    VitalsUpdate,
    WaveformSegment,
    encode,
)

logger = logging.getLogger(__name__)


def event_for(
    message: DeviceMessage, location: DeviceLocation
) -> tuple[msgspec.Struct, bool] | None:
    """Return (event, droppable) for a stored message, or None if it has no event."""
    patient_id = location.patient_id
    if patient_id is None:
        return None
    if isinstance(message, VitalsNumerics):
        update = VitalsUpdate(
            patient_id=patient_id,
            bed=location.bed_id,
            device_id=message.device_id,
            recorded_at=message.measured_at,
            measurements=message.measurements,
        )
        return update, False
    if isinstance(message, EcgWaveform):
        segment = WaveformSegment(
            lead=message.lead,
            sample_rate_hz=message.sample_rate_hz,
            first_sample_at=message.first_sample_at,
            first_sample_index=message.first_sample_index,
            scale_uv=message.scale_uv,
            samples=message.samples,
        )
        update = VitalsUpdate(
            patient_id=patient_id,
            bed=location.bed_id,
            device_id=message.device_id,
            recorded_at=message.first_sample_at,
            waveform=segment,
        )
        return update, True
    if isinstance(message, Emergency):
        emergency = PatientEmergency(
            patient_id=patient_id,
            bed=location.bed_id,
            device_id=message.device_id,
            alarm_id=message.alarm_id,
            kind=message.kind,
            priority=message.priority,
            category=message.category,
            state=message.state,
            started_at=message.started_at,
            evidence=message.evidence,
        )
        return emergency, False
    return None


def publish_stored(hub: EventHub, device_id: str, batch: StoredBatch) -> None:
    """Publish an event for each message the batch stored for the first time.

    Each event goes to the patient the message was stored for, which after a
    transfer may differ from the patient now in the device's bed.
    """
    for message in batch.new:
        patient_id = batch.patient_of(message.seq)
        if patient_id is None:
            logger.debug(
                "device %s seq %d has no patient; nothing published",
                device_id,
                message.seq,
            )
            continue
        if message.seq in batch.superseded:
            continue
        location = DeviceLocation(batch.location.bed_id, patient_id)
        found = event_for(message, location)
        if found is None:
            continue
        event, droppable = found
        hub.publish(patient_id, encode(event).decode(), droppable=droppable)
