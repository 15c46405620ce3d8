"""Polar H10 ECG samples, numbered along the stream across frames and reconnections."""

from __future__ import annotations

import logging

from edge_agent.ecg_stream import StreamFormat
from protocol.gatt.polar_pmd import POLAR_ECG_SAMPLE_RATE_HZ, PolarEcgFrame

logger = logging.getLogger(__name__)

NANOSECONDS_PER_SECOND = 1_000_000_000
# The H10's electrodes sit left and right on the lower chest, a horizontal axis close
# to lead I. NOTE: an approximation; the protocol has no code for a chest-strap lead.
POLAR_ECG_FORMAT = StreamFormat(
    lead="I", sample_rate_hz=float(POLAR_ECG_SAMPLE_RATE_HZ), scale_uv=1.0
)


class PolarSampleCounter:
    """Numbers samples across frames, and across reconnections by the sensor clock.

    Frames of one connection follow each other, so their samples are numbered on.
    When the frame timestamps (of each frame's last sample) jump by more than half a
    frame beyond the expected spacing, the samples lost in between are skipped in the
    numbering, so the ECG stream gets a gap instead of two stretches stitched together.
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
                # A restarted sensor clock gives no measure of the samples lost.
                logger.info("Polar ECG: sensor clock went back from %d to %d ns",
                            previous, frame.timestamp_ns)
        first = self._next_index
        self._next_index += count
        return first
