"""A simulated Polar H10 chest strap: heart rate, and ECG at 130 Hz on request.

Like the real strap, it streams ECG only after a central writes the "start ECG"
request to the PMD control point, sends its response to that request as an
indication, and stops the stream when the link drops. The ECG is a WFDB record
resampled to 130 Hz.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import numpy as np
from bumble import gatt
from bumble.core import UUID
from bumble.device import Connection

from firmware_sim.ble.peripheral import Feed, SimulatedSensor, ValueSource
from firmware_sim.ble.radio import VirtualRadio
from firmware_sim.ble.sensors import heart_rates
from firmware_sim.sources import WfdbReplay
from protocol.gatt.polar_pmd import (
    PMD_ERROR_SUCCESS,
    POLAR_ECG_SAMPLE_RATE_HZ,
    POLAR_PMD_CONTROL_POINT_UUID,
    POLAR_PMD_DATA_UUID,
    POLAR_PMD_SERVICE_UUID,
    PolarEcgFrame,
    start_ecg_request,
    start_ecg_response,
)

logger = logging.getLogger(__name__)

PMD_SERVICE = UUID(POLAR_PMD_SERVICE_UUID, "Polar Measurement Data")
PMD_CONTROL_POINT = UUID(POLAR_PMD_CONTROL_POINT_UUID, "PMD Control Point")
PMD_DATA = UUID(POLAR_PMD_DATA_UUID, "PMD Data")
# An H10 fills a 232-byte MTU with 73 samples, so a frame every 0.56 s.
SAMPLES_PER_FRAME = 73
FRAME_INTERVAL_S = SAMPLES_PER_FRAME / POLAR_ECG_SAMPLE_RATE_HZ
# PMD error code for a request the simulated strap does not support.
PMD_ERROR_NOT_SUPPORTED = 0x03
NANOSECONDS_PER_SECOND = 1_000_000_000


def record_microvolts(record: str | Path, lead: str | None = None) -> np.ndarray:
    """Return one lead of a WFDB record in microvolts, resampled to 130 Hz."""
    from scipy.signal import resample_poly

    replay = WfdbReplay(record, lead, loop=False)
    microvolts = replay.samples.astype(np.float64) * replay.microvolts_per_count
    ratio = Fraction(POLAR_ECG_SAMPLE_RATE_HZ) / Fraction(replay.sample_rate_hz)
    ratio = ratio.limit_denominator(1000)
    resampled = resample_poly(microvolts, ratio.numerator, ratio.denominator)
    return np.round(resampled).astype(np.int64)


def ecg_frames(samples_uv: Sequence[int] | np.ndarray,
               samples_per_frame: int = SAMPLES_PER_FRAME) -> ValueSource:
    """Return a source of PMD ECG frames that loops over ``samples_uv``.

    Step N carries samples N * samples_per_frame onwards, stamped with the sensor
    time of its last sample, so steps missed while the link was down show as a gap.
    """
    signal = np.asarray(samples_uv, dtype=np.int64)
    if len(signal) < samples_per_frame:
        raise ValueError(
            f"need at least {samples_per_frame} ECG samples, got {len(signal)}"
        )

    def frame(step: int) -> bytes:
        first = step * samples_per_frame
        indexes = np.arange(first, first + samples_per_frame) % len(signal)
        last_sample_ns = (
            (first + samples_per_frame - 1) * NANOSECONDS_PER_SECOND
            // POLAR_ECG_SAMPLE_RATE_HZ
        )
        samples = tuple(int(value) for value in signal[indexes])
        return PolarEcgFrame(last_sample_ns, samples).to_bytes()

    return frame


class PolarH10(SimulatedSensor):
    """A chest strap with a Heart Rate service and the PMD ECG stream."""

    def __init__(self, radio: VirtualRadio, address: str, samples_uv: np.ndarray,
                 rates_bpm: Sequence[int] = (60,), name: str = "Polar H10 SIM0001"
                 ) -> None:
        device = radio.make_device(name, address)
        self.ecg = Feed(PMD_SERVICE, PMD_DATA, ecg_frames(samples_uv), active=False)
        heart_rate = Feed(gatt.GATT_HEART_RATE_SERVICE,
                          gatt.GATT_HEART_RATE_MEASUREMENT_CHARACTERISTIC,
                          heart_rates(rates_bpm))
        self.control_point: gatt.Characteristic[bytes] = gatt.Characteristic(
            PMD_CONTROL_POINT,
            gatt.Characteristic.Properties.WRITE
            | gatt.Characteristic.Properties.INDICATE,
            gatt.Characteristic.WRITEABLE,
            gatt.CharacteristicValue(write=self._on_request),
        )
        super().__init__(device, [heart_rate, self.ecg],
                         controls=[(PMD_SERVICE, self.control_point)])

    def _on_disconnection(self, reason: int) -> None:
        self.ecg.active = False
        super()._on_disconnection(reason)

    def _on_request(self, connection: Connection, request: bytes) -> None:
        if bytes(request) == start_ecg_request():
            self.ecg.active = True
            error = PMD_ERROR_SUCCESS
            logger.info("%s: ECG stream started", self.device.name)
        else:
            error = PMD_ERROR_NOT_SUPPORTED
            logger.info("%s: unsupported PMD request %s", self.device.name,
                        bytes(request).hex())
        # The response goes out after the write response, as an indication.
        self._spawn(self.device.indicate_subscriber(
            connection, self.control_point, start_ecg_response(error)
        ))


def polar_h10(radio: VirtualRadio, address: str, record: str | Path,
              lead: str | None = None) -> PolarH10:
    """Create a Polar H10 that streams ``record`` as its ECG."""
    return PolarH10(radio, address, record_microvolts(record, lead))
