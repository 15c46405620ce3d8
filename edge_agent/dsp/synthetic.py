"""Synthetic ECG made of Gaussian P, QRS and T waves, for tests and demonstrations.

The waveform is a caricature: it has realistic timing, amplitudes and QRS slopes, so
it exercises the detector and the alarms, but it is no physiological model.
"""

import logging
from collections.abc import Sequence

import numpy as np

logger = logging.getLogger(__name__)

# (offset from the R peak in s, amplitude as a fraction of the R wave, width sigma in s)
_WAVES = (
    (-0.160, 0.12, 0.020),  # P
    (-0.025, -0.10, 0.008),  # Q
    (0.000, 1.00, 0.010),  # R
    (0.025, -0.20, 0.008),  # S
    (0.280, 0.30, 0.045),  # T
)
_WAVE_SPAN_SIGMAS = 5.0


def beat_times_at_rate(
    rate_bpm: float, duration_s: float, start_s: float = 0.5
) -> np.ndarray:
    """Return R-peak times (s) of a perfectly regular rhythm from `start_s`."""
    return np.arange(start_s, duration_s, 60.0 / rate_bpm)


def synthetic_ecg(
    beat_times_s: Sequence[float] | np.ndarray,
    duration_s: float,
    sample_rate_hz: float,
    r_amplitude_mv: float = 1.0,
    t_wave_fraction: float = 0.3,
) -> np.ndarray:
    """Return an ECG in millivolts with one P-QRS-T complex per beat time.

    `t_wave_fraction` is the T-wave height relative to the R wave.
    """
    waves = [
        (offset_s, t_wave_fraction if name == "T" else fraction, sigma_s)
        for name, (offset_s, fraction, sigma_s) in zip("PQRST", _WAVES, strict=True)
    ]
    sample_count = round(duration_s * sample_rate_hz)
    ecg = np.zeros(sample_count)
    for beat_s in beat_times_s:
        for offset_s, fraction, sigma_s in waves:
            centre = (beat_s + offset_s) * sample_rate_hz
            half_span = _WAVE_SPAN_SIGMAS * sigma_s * sample_rate_hz
            first = max(0, int(np.floor(centre - half_span)))
            last = min(sample_count, int(np.ceil(centre + half_span)) + 1)
            if first >= last:
                continue
            t = (np.arange(first, last) - centre) / (sigma_s * sample_rate_hz)
            ecg[first:last] += fraction * r_amplitude_mv * np.exp(-0.5 * t * t)
    return ecg
