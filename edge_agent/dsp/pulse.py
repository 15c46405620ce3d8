"""Streaming detector of pulses in a plethysmogram (PPG) or arterial pressure signal.

The signal is band-passed, and each systolic peak that dominates its neighbourhood is a
candidate. A candidate counts as a pulse when its rise from the preceding foot is
clear of the noise and reaches a fraction of the recent pulse amplitude. The units of
the signal do not matter (PLETH is often in normalised units), because both limits are
relative: to a robust noise estimate and to earlier pulses.
"""

import logging
import math
import statistics

import numpy as np
from scipy import signal
from scipy.ndimage import maximum_filter1d

from edge_agent.dsp.filters import StreamingFilter, hold_nonfinite

logger = logging.getLogger(__name__)

# The pulse fundamental lies between 0.5 and 4 Hz (30 to 240/min). The upper edge keeps
# the second harmonic, so the systolic peak stays sharp.
BAND_HZ = (0.5, 8.0)
BAND_ORDER = 1
# A systolic peak must be the maximum within this distance on either side, which caps
# the detectable rate at 240/min. It is also the decision delay.
PEAK_NEIGHBOURHOOD_S = 0.25
# The foot of a pulse is the minimum this far before its peak.
FOOT_SEARCH_S = 0.6
# A pulse rises at least this fraction of the median of the recent pulses ...
MIN_RELATIVE_AMPLITUDE = 0.3
REFERENCE_PULSES = 8
# ... and that reference halves every 10 s without a pulse, so a real drop in
# perfusion is followed rather than read as pulses stopping for good.
REFERENCE_HALF_LIFE_S = 10.0
# A pulse rises at least this many noise standard deviations. The noise is estimated
# from the second difference over NOISE_WINDOW_S, where a smooth pulse wave contributes
# almost nothing. By estimate, band-passed white noise rises less than 2 of its
# standard deviations from foot to peak at 125 Hz, and less at higher rates.
NOISE_FACTOR = 4.0
NOISE_WINDOW_S = 2.0
# Second differences of white noise have sqrt(6) times its standard deviation, and the
# MAD of a Gaussian is 1 / 1.4826 of its standard deviation.
SECOND_DIFFERENCE_GAIN = math.sqrt(6.0)
MAD_TO_SIGMA = 1.4826
# Rises below this fraction of the signal's magnitude are floating-point rounding of
# the filter on a constant input.
ROUNDING_FLOOR = 1e-9
# After a gap (NaN samples, or chunks without the signal) the filter settles this long
# before pulses count again.
SETTLE_S = 1.0
# Longer chunks are processed in slices of this length.
MAX_STEP_S = 1.0
# Filtered and raw samples kept for the peak and foot search and the noise estimate.
# They must cover one slice plus the peak neighbourhood and the foot search before it.
HISTORY_S = MAX_STEP_S + 2.0


class PulseDetector:
    """Causal pulse detector, fed chunks of one pulsatile signal in arrival order.

    Sample indices are absolute and start at `start_sample`, so they can be those of
    an ECG that runs alongside. `horizon` is the index before which every pulse has
    been reported, and `usable_from` the index from which the signal has been
    continuous and finite.
    """

    def __init__(self, sample_rate_hz: float, start_sample: int = 0) -> None:
        self._fs = float(sample_rate_hz)
        if not self._fs > 2.5 * BAND_HZ[1]:
            raise ValueError(
                f"sample_rate_hz={sample_rate_hz} is too low for pulse detection; "
                f"it must exceed {2.5 * BAND_HZ[1]:g} Hz"
            )
        sos = signal.butter(
            BAND_ORDER, BAND_HZ, btype="bandpass", fs=self._fs, output="sos"
        )
        self._filter = StreamingFilter(sos)
        self._neighbourhood = max(1, round(PEAK_NEIGHBOURHOOD_S * self._fs))
        self._foot = round(FOOT_SEARCH_S * self._fs)
        self._capacity = round(HISTORY_S * self._fs)
        self._filtered = np.zeros(0)
        self._raw = np.zeros(0)
        self._start = start_sample  # absolute index of the oldest sample held
        self._examined_until = start_sample
        self._last_finite = 0.0
        self._amplitudes: list[float] = []
        self._last_pulse: int | None = None
        self.usable_from = start_sample
        self.horizon = start_sample

    @property
    def samples_seen(self) -> int:
        """Absolute index one past the newest sample."""
        return self._start + self._filtered.size

    def process(self, samples: np.ndarray) -> list[int]:
        """Feed one chunk and return the peak indices of the pulses decided in it.

        NaN and infinite samples mark a gap: the value before them is held, and no
        pulse counts until SETTLE_S after the gap.
        """
        raw = np.asarray(samples, dtype=np.float64).ravel()
        step = round(MAX_STEP_S * self._fs)
        pulses: list[int] = []
        for begin in range(0, raw.size, step):
            pulses.extend(self._process_step(raw[begin : begin + step]))
        return pulses

    def _process_step(self, raw: np.ndarray) -> list[int]:
        finite = np.isfinite(raw)
        if not finite.all():
            last_gap = self.samples_seen + int(np.flatnonzero(~finite)[-1])
            self.usable_from = max(self.usable_from, last_gap + 1 + self._settle())
        cleaned, self._last_finite = hold_nonfinite(raw, self._last_finite)
        self._append(cleaned, self._filter.process(cleaned))
        decided_until = self.samples_seen - self._neighbourhood
        pulses = self._find_pulses(decided_until)
        self._examined_until = max(self._examined_until, decided_until)
        self.horizon = max(self.horizon, decided_until)
        return pulses

    def mark_gap(self, sample_count: int) -> list[int]:
        """Advance over `sample_count` samples for which the signal is missing."""
        return self.process(np.full(sample_count, np.nan))

    def _settle(self) -> int:
        return round(SETTLE_S * self._fs)

    def _append(self, raw: np.ndarray, filtered: np.ndarray) -> None:
        self._raw = np.concatenate((self._raw, raw))
        self._filtered = np.concatenate((self._filtered, filtered))
        excess = self._filtered.size - self._capacity
        if excess > 0:
            self._raw = self._raw[excess:]
            self._filtered = self._filtered[excess:]
            self._start += excess

    def _find_pulses(self, decided_until: int) -> list[int]:
        begin = max(self._examined_until, self._start + 1)
        if decided_until <= begin:
            return []
        wave = self._filtered
        dominant = maximum_filter1d(wave, size=2 * self._neighbourhood + 1)
        offsets = np.arange(begin - self._start, decided_until - self._start)
        is_peak = (wave[offsets] >= dominant[offsets]) & (
            wave[offsets] > wave[offsets - 1]
        )
        threshold_floor = self._noise_floor()
        pulses: list[int] = []
        for offset in offsets[is_peak]:
            peak = int(offset) + self._start
            foot = float(np.min(wave[max(0, offset - self._foot) : offset + 1]))
            amplitude = float(wave[offset]) - foot
            if peak >= self.usable_from and self._is_pulse(
                peak, amplitude, threshold_floor
            ):
                pulses.append(peak)
        return pulses

    def _noise_floor(self) -> float:
        recent = self._raw[-round(NOISE_WINDOW_S * self._fs) :]
        magnitude = float(np.max(np.abs(recent))) if recent.size else 0.0
        floor = ROUNDING_FLOOR * (1.0 + magnitude)
        if recent.size < 3:
            return floor
        second = np.diff(recent, 2)
        mad = float(np.median(np.abs(second - np.median(second))))
        sigma = MAD_TO_SIGMA * mad / SECOND_DIFFERENCE_GAIN
        return max(floor, NOISE_FACTOR * sigma)

    def _is_pulse(self, peak: int, amplitude: float, noise_floor: float) -> bool:
        threshold = noise_floor
        if self._amplitudes and self._last_pulse is not None:
            elapsed_s = (peak - self._last_pulse) / self._fs
            decay = 0.5 ** (elapsed_s / REFERENCE_HALF_LIFE_S)
            reference = statistics.median(self._amplitudes) * decay
            threshold = max(threshold, MIN_RELATIVE_AMPLITUDE * reference)
        if amplitude <= threshold:
            return False
        self._amplitudes.append(amplitude)
        del self._amplitudes[:-REFERENCE_PULSES]
        self._last_pulse = peak
        return True
