"""Starting the Polar H10 ECG stream, and numbering its samples across frames.

The H10 sends ECG only after a "start measurement" request on its PMD control point,
and only while indications of that control point are enabled. Layouts follow Polar's
Measurement Data specification as used by the Polar BLE SDK: little-endian, a request
``op code, measurement type, then (setting type, count, value)`` per setting, and a
response ``0xF0, op code, measurement type, error code``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime

from protocol.gatt.polar_pmd import (
    PMD_MEASUREMENT_TYPE_ECG,
    POLAR_ECG_SAMPLE_RATE_HZ,
    PolarEcgFrame,
)

logger = logging.getLogger(__name__)

PMD_OP_START_MEASUREMENT = 0x02
PMD_RESPONSE_CODE = 0xF0
PMD_SETTING_SAMPLE_RATE = 0x00
PMD_SETTING_RESOLUTION = 0x01
# The H10 streams ECG at 130 Hz with 14-bit resolution only.
POLAR_ECG_RESOLUTION_BITS = 14
PMD_ERROR_ALREADY_IN_STATE = 0x06
NANOSECONDS_PER_SECOND = 1_000_000_000


def start_ecg_request() -> bytes:
    """Return the control point request that starts the ECG stream at 130 Hz."""
    settings = (
        (PMD_SETTING_SAMPLE_RATE, POLAR_ECG_SAMPLE_RATE_HZ),
        (PMD_SETTING_RESOLUTION, POLAR_ECG_RESOLUTION_BITS),
    )
    request = bytes([PMD_OP_START_MEASUREMENT, PMD_MEASUREMENT_TYPE_ECG])
    for setting, value in settings:
        request += bytes([setting, 1]) + value.to_bytes(2, "little")
    return request


def start_ecg_error(response: bytes) -> str | None:
    """Return why a control point response refuses the start, None if it accepts."""
    if len(response) < 4 or response[0] != PMD_RESPONSE_CODE:
        return f"unexpected control point response {response.hex()}"
    if response[1] != PMD_OP_START_MEASUREMENT:
        return f"response to op code 0x{response[1]:02x}, not to the start request"
    # A stream left running by an earlier connection is as good as a new one.
    if response[3] in (0, PMD_ERROR_ALREADY_IN_STATE):
        return None
    return f"start of the ECG stream refused with PMD error code {response[3]}"


@dataclass(frozen=True)
class BleEcgSamples:
    """ECG samples in microvolts from one PMD frame, numbered along the stream."""

    address: str
    first_sample_index: int
    samples_uv: tuple[int, ...]
    received_at: datetime


class PolarSampleCounter:
    """Numbers samples across frames, and across reconnections by the sensor clock.

    Frames of one connection follow each other, so their samples are numbered on.
    When the frame timestamps (of each frame's last sample) jump by more than half a
    frame beyond the expected spacing, the samples lost in between are skipped in the
    numbering, so the ECG stream sees a gap instead of stitching two stretches.
    """

    def __init__(self, sample_rate_hz: float = POLAR_ECG_SAMPLE_RATE_HZ) -> None:
        self._sample_period_ns = NANOSECONDS_PER_SECOND / sample_rate_hz
        self._next_index = 0
        self._last_timestamp_ns: int | None = None

    def number(self, frame: PolarEcgFrame) -> int:
        """Return the index of the frame's first sample."""
        count = len(frame.samples_uv)
        previous = self._last_timestamp_ns
        self._last_timestamp_ns = frame.timestamp_ns
        if previous is not None:
            expected_ns = previous + count * self._sample_period_ns
            drift_ns = frame.timestamp_ns - expected_ns
            if drift_ns > count * self._sample_period_ns / 2:
                skipped = round(drift_ns / self._sample_period_ns)
                logger.info("Polar ECG: %d samples lost before sensor time %d ns",
                            skipped, frame.timestamp_ns)
                self._next_index += skipped
            elif frame.timestamp_ns < previous:
                # A restarted sensor clock says nothing about the samples lost.
                logger.info("Polar ECG: sensor clock went back from %d to %d ns",
                            previous, frame.timestamp_ns)
        first = self._next_index
        self._next_index += count
        return first
