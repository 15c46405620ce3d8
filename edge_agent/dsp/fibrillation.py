"""Spectral detector of ventricular flutter and fibrillation on the filtered ECG.

Flutter and fibrillation are oscillations of 3 to 8 Hz (180 to 480 per minute) with no
QRS complexes. Over each 4 s window the detector looks for a spectrum that peaks in
that band, has most of its power close to the peak, and has little power at high
frequency, where the steep edges of real QRS complexes put theirs. The caller also
checks that the QRS detector found no normal beat within the window.

A window qualifies before it is all oscillation: a flat stretch before the onset adds
no power. So each qualifying window also reports where the oscillation in it began,
and the 4 s duration counts from there.
"""

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

# The PhysioNet 2015 ventricular flutter/fibrillation alarm needs the waveform for at
# least 4 s, so the analysis window is 4 s long.
WINDOW_S = 4.0
# A window is analysed every 0.25 s, so detection comes at most 0.25 s after the
# window is complete.
HOP_S = 0.25
DOMINANT_BAND_HZ = (3.0, 8.0)
ANALYSIS_BAND_HZ = (1.0, 30.0)
# Power within this distance of the dominant frequency counts as concentrated.
PEAK_HALF_WIDTH_HZ = 1.0
# Thresholds from 4 s windows at 125 to 500 Hz: the fibrillation-like signals of
# `synthetic.fibrillation_ecg` put over 0.95 of their power near the peak and none
# above 12 Hz. Synthetic sinus rhythms of 40 to 300 bpm put at most 0.45 near the peak
# and over 0.2 above 12 Hz. MIT-BIH record 100 and PhysioNet 2015 record a103l (leads
# II and V) put at least 0.043 above 12 Hz. Real fibrillation carries more noise than
# the synthetic one, so the high-frequency limit is an estimate.
MIN_PEAK_FRACTION = 0.7
HIGH_BAND_HZ = 12.0
MAX_HIGH_FRACTION = 0.03
# Below this peak-to-peak (mV) the window is treated as flat, which asystole covers.
MIN_PEAK_TO_PEAK_MV = 0.15
# The oscillation began at the first of the trailing blocks whose peak-to-peak reaches
# MIN_PEAK_TO_PEAK_MV and this fraction of the blocks' median. A block of 0.25 s holds
# most of a cycle at the lowest dominant frequency (3 Hz).
ONSET_BLOCK_S = 0.25
ONSET_BLOCK_FRACTION = 0.25


@dataclass(frozen=True)
class FibrillationWindow:
    """Spectral figures of one 4 s window."""

    end_sample: int  # one past the last sample of the window
    # First sample of the oscillation in the window: its start unless the window opens
    # with a flat stretch. Meaningful only when `fibrillation` is set.
    onset_sample: int
    dominant_hz: float
    peak_fraction: float
    high_fraction: float
    fibrillation: bool


class FibrillationDetector:
    """Streaming detector fed with filtered ECG (mV) in arrival order."""

    def __init__(self, sample_rate_hz: float, window_s: float = WINDOW_S) -> None:
        self._fs = float(sample_rate_hz)
        self._window = round(window_s * self._fs)
        self.window_samples = self._window
        self._hop = max(1, round(HOP_S * self._fs))
        self._buffer = np.zeros(0)
        self._end = 0  # absolute index one past the newest sample
        self._next_analysis = self._window
        frequencies = np.fft.rfftfreq(self._window, 1.0 / self._fs)
        self._frequencies = frequencies
        self._band = (frequencies >= ANALYSIS_BAND_HZ[0]) & (
            frequencies <= min(ANALYSIS_BAND_HZ[1], 0.45 * self._fs)
        )
        self._taper = np.hanning(self._window)
        self._block = max(1, round(ONSET_BLOCK_S * self._fs))

    def process(
        self, filtered_mv: np.ndarray, skip_until: int = -1
    ) -> list[FibrillationWindow]:
        """Add samples and return the analysis of every window completed by them.

        Windows that start at or before `skip_until` are reported as not fibrillation
        without a spectrum, because the caller rules them out (a normal beat in them).
        """
        samples = np.asarray(filtered_mv, dtype=np.float64)
        windows: list[FibrillationWindow] = []
        self._buffer = np.concatenate((self._buffer, samples))
        self._end += samples.size
        while self._next_analysis <= self._end:
            stop = self._buffer.size - (self._end - self._next_analysis)
            end = self._next_analysis
            if end - self._window <= skip_until:
                windows.append(FibrillationWindow(end, end, 0.0, 0.0, 0.0, False))
            else:
                window = self._buffer[stop - self._window : stop]
                windows.append(self._analyse(window, end))
            self._next_analysis += self._hop
        keep = self._window + (self._end - self._next_analysis) + self._hop
        self._buffer = self._buffer[-keep:]
        return windows

    def _analyse(self, window: np.ndarray, end_sample: int) -> FibrillationWindow:
        power = np.abs(np.fft.rfft((window - window.mean()) * self._taper)) ** 2
        band_power = float(power[self._band].sum())
        if np.ptp(window) < MIN_PEAK_TO_PEAK_MV or band_power <= 0.0:
            return FibrillationWindow(end_sample, end_sample, 0.0, 0.0, 0.0, False)
        in_band = np.flatnonzero(self._band)
        dominant_hz = float(self._frequencies[in_band[np.argmax(power[in_band])]])
        near_peak = self._band & (
            np.abs(self._frequencies - dominant_hz) <= PEAK_HALF_WIDTH_HZ
        )
        high = self._band & (self._frequencies >= HIGH_BAND_HZ)
        peak_fraction = float(power[near_peak].sum()) / band_power
        high_fraction = float(power[high].sum()) / band_power
        fibrillation = (
            DOMINANT_BAND_HZ[0] <= dominant_hz <= DOMINANT_BAND_HZ[1]
            and peak_fraction >= MIN_PEAK_FRACTION
            and high_fraction <= MAX_HIGH_FRACTION
        )
        onset = self._onset(window, end_sample) if fibrillation else end_sample
        return FibrillationWindow(
            end_sample, onset, dominant_hz, peak_fraction, high_fraction, fibrillation
        )

    def _onset(self, window: np.ndarray, end_sample: int) -> int:
        """Return where the trailing run of oscillating blocks in `window` begins."""
        count = window.size // self._block
        blocks = window[window.size - count * self._block :].reshape(count, self._block)
        swings = np.ptp(blocks, axis=1)
        typical = float(np.median(swings))
        limit = max(MIN_PEAK_TO_PEAK_MV, ONSET_BLOCK_FRACTION * typical)
        quiet = np.flatnonzero(swings < limit)
        first = int(quiet[-1]) + 1 if quiet.size else 0
        if first == 0:
            return end_sample - window.size  # oscillating from the window's start
        return end_sample - (count - first) * self._block
