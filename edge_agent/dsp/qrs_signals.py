"""Derived signals the QRS detector works on, computed chunk by chunk.

`QrsFrontEnd` removes pacemaker pulses from raw millivolt samples and turns them into
four aligned signals: the baseline-corrected and mains-filtered ECG, a smoothed copy
for amplitude measurement, the absolute slope of the QRS band, and the Pan-Tompkins
moving-window integral of the squared slope. `SignalHistory` keeps the last few
seconds of them, addressed by absolute sample index, and `qrs_band_slope_share`
measures how much of a stretch's steepest slope lies in the QRS band.
"""

import logging
from dataclasses import dataclass

import numpy as np

from edge_agent.dsp.filters import (
    StreamingFilter,
    design_baseline_highpass,
    design_mains_notch,
    design_qrs_bandpass,
    hold_nonfinite,
)
from edge_agent.dsp.pacing import PaceSpikeRemover

logger = logging.getLogger(__name__)

# Samples are clipped to this range (mV) before filtering. Body-surface ECG stays within
# about +-10 mV, so clipping only removes impossible values, which squaring could
# overflow to infinity.
INPUT_LIMIT_MV = 100.0

# QRS amplitude is measured after a 20 ms moving average (-3 dB near 22 Hz, a cheap
# low-pass). It keeps over 85 % of the height of a Gaussian spike with a 10 ms sigma,
# and cuts the peak-to-peak of white noise to about 0.3 of its raw value at 360 Hz.
AMPLITUDE_SMOOTHING_S = 0.020

# Pan-Tompkins integration window: about the width of a wide QRS complex.
INTEGRATION_WINDOW_S = 0.150

# Taps of the Pan-Tompkins five-point derivative, newest sample first, in units of the
# sample interval (multiply by the sampling rate to get mV/s).
DERIVATIVE_TAPS = np.array([2.0, 1.0, 0.0, -1.0, -2.0]) / 8.0

SIGNAL_NAMES = ("ecg", "amplitude", "slope", "integral")


@dataclass(frozen=True)
class QrsSignals:
    """Aligned derived signals for one chunk, each with the chunk's length."""

    ecg: np.ndarray  # baseline-corrected and mains-filtered ECG (mV)
    amplitude: np.ndarray  # `ecg` smoothed for amplitude measurement (mV)
    slope: np.ndarray  # absolute derivative of the QRS band (mV/s)
    integral: np.ndarray  # moving-window mean of the squared slope ((mV/s)^2)
    nonfinite_count: int  # NaN or infinite input samples, replaced by the last value
    # Absolute indices of samples replaced because they were part of a pacemaker pulse.
    pace_spike_samples: list[int]


class MovingAverage:
    """Causal moving average over a fixed number of samples, continued across chunks.

    Before the window has filled, the missing older samples count as zeros.
    """

    def __init__(self, length: int) -> None:
        self._length = max(1, length)
        self._tail = np.zeros(self._length - 1)

    def process(self, samples: np.ndarray) -> np.ndarray:
        """Average one chunk and return the output, which has the chunk's length."""
        extended = np.concatenate((self._tail, samples))
        if self._length > 1:
            self._tail = extended[-(self._length - 1) :]
        sums = np.cumsum(np.concatenate(([0.0], extended)))
        return (sums[self._length :] - sums[: -self._length]) / self._length


class QrsFrontEnd:
    """Stateful chain of filters that produces `QrsSignals` from raw samples.

    The output for any chunking of the input matches the output for one call on the
    whole signal, to rounding error. It lags the input by `delay` samples, because
    pacemaker pulse removal looks a few samples ahead.
    """

    def __init__(self, sample_rate_hz: float, mains_hz: float) -> None:
        self._sample_rate_hz = sample_rate_hz
        self._pacing = PaceSpikeRemover(sample_rate_hz)
        self.delay = self._pacing.delay
        # One cascade for both stages saves a scipy call per chunk.
        cleaning = np.vstack(
            (
                design_mains_notch(sample_rate_hz, mains_hz),
                design_baseline_highpass(sample_rate_hz),
            )
        )
        self._cleaning = StreamingFilter(cleaning)
        self._smoothing = MovingAverage(round(AMPLITUDE_SMOOTHING_S * sample_rate_hz))
        self._bandpass = StreamingFilter(design_qrs_bandpass(sample_rate_hz))
        self._integration = MovingAverage(round(INTEGRATION_WINDOW_S * sample_rate_hz))
        self._last_finite = 0.0
        # The previous chunk's tail, so the derivative continues seamlessly.
        self._band_tail = np.zeros(DERIVATIVE_TAPS.size - 1)

    def process(self, samples_mv: np.ndarray) -> QrsSignals:
        """Filter one chunk of raw samples (mV) into the derived signals."""
        raw = np.asarray(samples_mv, dtype=np.float64).ravel()
        cleaned, self._last_finite = hold_nonfinite(raw, self._last_finite)
        nonfinite_count = int(raw.size - np.count_nonzero(np.isfinite(raw)))
        # Pacemaker pulses reach 700 mV, so they go before clipping can flatten them.
        paced = self._pacing.process(cleaned)
        np.clip(paced, -INPUT_LIMIT_MV, INPUT_LIMIT_MV, out=paced)

        ecg = self._cleaning.process(paced)
        amplitude = self._smoothing.process(ecg)
        band = self._bandpass.process(ecg)
        slope = self._derivative(band)
        integral = self._integration.process(slope * slope)
        return QrsSignals(
            ecg,
            amplitude,
            np.abs(slope),
            integral,
            nonfinite_count,
            self._pacing.take_spike_samples(),
        )

    def _derivative(self, band: np.ndarray) -> np.ndarray:
        extended = np.concatenate((self._band_tail, band))
        self._band_tail = extended[-(DERIVATIVE_TAPS.size - 1) :]
        return (
            np.convolve(extended, DERIVATIVE_TAPS, mode="valid") * self._sample_rate_hz
        )


class SignalHistory:
    """The most recent samples of each derived signal, by absolute sample index."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._start = 0
        self._signals = {name: np.zeros(0) for name in SIGNAL_NAMES}

    @property
    def start(self) -> int:
        """Absolute index of the oldest sample still held."""
        return self._start

    @property
    def end(self) -> int:
        """Absolute index one past the newest sample."""
        return self._start + self._signals["ecg"].size

    def append(self, chunk: QrsSignals) -> None:
        """Add a chunk and drop samples older than the capacity."""
        for name in SIGNAL_NAMES:
            joined = np.concatenate((self._signals[name], getattr(chunk, name)))
            self._signals[name] = joined
        excess = self._signals["ecg"].size - self._capacity
        if excess > 0:
            for name in SIGNAL_NAMES:
                self._signals[name] = self._signals[name][excess:]
            self._start += excess

    def window(self, name: str, begin: int, end: int) -> np.ndarray:
        """Return samples [begin, end) of one signal, clipped to what is held."""
        begin = max(begin, self._start) - self._start
        end = min(end, self.end) - self._start
        return self._signals[name][begin : max(begin, end)]


def qrs_band_slope_share(
    history: SignalHistory, begin: int, end: int, sample_rate_hz: float
) -> float:
    """Return the steepest QRS-band slope over the steepest ECG slope in [begin, end).

    A QRS complex keeps about half (narrow) to 0.8 (wide) of its steepest slope in the
    QRS band, while the slope of muscle noise lies mostly above the band. The ECG
    slope is a two-point difference, so it keeps the noise that the band-pass and the
    five-point derivative suppress. Returns 0.0 for a window without any slope.
    """
    ecg = history.window("ecg", begin, end)
    band_slope = history.window("slope", begin, end)
    if ecg.size < 2:
        return 0.0
    ecg_slope = float(np.max(np.abs(np.diff(ecg)))) * sample_rate_hz
    if ecg_slope <= 0.0:
        return 0.0
    return float(np.max(band_slope)) / ecg_slope
