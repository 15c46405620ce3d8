"""Removal of pacemaker pulses from raw ECG before QRS detection.

A pacemaker pulse is at most 2 ms wide, so after sampling it covers one or two samples
and stands far out from its neighbours. A QRS complex is 60 ms or wider and barely
changes over the same few samples. Each sample is compared with the median of the
samples within a few milliseconds on either side. It is a pacemaker pulse when it
departs from that median by a large absolute amount, and by nearly as much as from the
samples at the edge of the neighbourhood. Marked samples are replaced by the median, so
the paced QRS that follows the pulse is still detected.

The median needs samples after the current one, so the output lags the input by the
half-width of the neighbourhood: 2 samples at 125 to 500 Hz and 3 samples at 1000 Hz.
"""

import logging
import math

import numpy as np
from scipy.ndimage import median_filter

logger = logging.getLogger(__name__)

# Pacemaker pulses that IEC 60601-2-27 (clause 201.12.1.101.13) requires a heart rate
# meter to reject are 0.1 to 2 ms wide and +-2 to +-700 mV high, as monitor manuals
# that claim the clause quote it (for example the Mindray BeneHeart D60 manual).
MAX_PACE_PULSE_S = 0.002
# Sampling a 2 mV pulse that falls between two samples can split it, so half of the
# minimum height is enough to mark a sample.
MIN_PACE_DEPARTURE_MV = 1.0
# A pulse departs from the local median by about as much as from the neighbourhood's
# edge samples. On a smooth wave sampled at 125 to 1000 Hz the ratio stays below about
# 0.5, because the median follows the wave.
MIN_NARROWNESS = 0.8


class PaceSpikeRemover:
    """Streaming remover of pacemaker pulses, with a fixed delay of `delay` samples."""

    def __init__(self, sample_rate_hz: float) -> None:
        pulse_samples = max(1, math.ceil(MAX_PACE_PULSE_S * sample_rate_hz))
        # One more sample on each side, so a pulse that straddles two samples is
        # still in the minority of the median window.
        self.delay = pulse_samples + 1
        self._window = 2 * self.delay + 1
        # The last 2 * delay samples, of which the newest `delay` are undecided. Before
        # the first sample it is None, and the signal counts as constant before it.
        self._tail: np.ndarray | None = None
        self._emitted = 0
        self._spike_samples: list[int] = []

    def process(self, samples_mv: np.ndarray) -> np.ndarray:
        """Take finite samples and return those `delay` samples back, pulses removed.

        The first call returns `delay` fewer samples than it takes. Afterwards each call
        returns as many as it takes.
        """
        samples = np.asarray(samples_mv, dtype=np.float64).ravel()
        if samples.size == 0:
            return np.zeros(0)
        if self._tail is None:
            self._tail = np.full(self.delay, samples[0])
        extended = np.concatenate((self._tail, samples))
        self._tail = extended[-2 * self.delay :]
        if extended.size <= 2 * self.delay:
            # Too few samples to decide on any. Keep them all for the next call.
            self._tail = extended
            return np.zeros(0)
        median = median_filter(extended, size=self._window, mode="nearest")
        decided = slice(self.delay, extended.size - self.delay)
        departure = np.abs(extended - median)[decided]
        before = extended[: extended.size - 2 * self.delay]
        after = extended[2 * self.delay :]
        middle = extended[decided]
        edges = np.maximum(np.abs(middle - before), np.abs(middle - after))
        spike = (departure >= MIN_PACE_DEPARTURE_MV) & (
            departure >= MIN_NARROWNESS * edges
        )
        output = np.where(spike, median[decided], middle)
        offsets = np.flatnonzero(spike)
        self._spike_samples.extend(int(self._emitted + offset) for offset in offsets)
        self._emitted += output.size
        return output

    def take_spike_samples(self) -> list[int]:
        """Return the indices of samples marked as pacemaker pulse since the last call."""
        spikes, self._spike_samples = self._spike_samples, []
        return spikes
