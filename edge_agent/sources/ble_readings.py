"""Readings the Bluetooth LE sources pass to the agent: decoded numerics and ECG samples.

Plain data with no Bluetooth stack behind it, so that the agent can handle it without
importing bleak or bumble on a bed that has no Bluetooth sensor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from protocol.messages import Measurement, VitalsNumerics


@dataclass(frozen=True)
class BleReading:
    """Measurements decoded from one notification of one sensor."""

    address: str
    characteristic_uuid: str
    received_at: datetime
    measurements: list[Measurement]

    def to_message(self, device_id: str, seq: int, sent_at: datetime) -> VitalsNumerics:
        return VitalsNumerics(
            device_id=device_id, seq=seq, sent_at=sent_at,
            measured_at=self.received_at, measurements=list(self.measurements),
        )


@dataclass(frozen=True)
class BleEcgSamples:
    """ECG samples in microvolts from one PMD frame, numbered along the stream."""

    address: str
    first_sample_index: int
    samples_uv: tuple[int, ...]
    received_at: datetime
