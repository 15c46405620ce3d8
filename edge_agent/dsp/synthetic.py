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
    rate_adapted: bool = False,
) -> np.ndarray:
    """Return an ECG in millivolts with one P-QRS-T complex per beat time.

    `t_wave_fraction` is the T-wave height relative to the R wave. With
    `rate_adapted`, the P and T waves move closer to the QRS and narrow by the square
    root of the RR interval in seconds (Bazett's QT scaling). At fast rates the T wave
    then ends before the next QRS, as in a real heart.
    """
    waves = [
        (offset_s, t_wave_fraction if name == "T" else fraction, sigma_s)
        for name, (offset_s, fraction, sigma_s) in zip("PQRST", _WAVES, strict=True)
    ]
    beats = np.asarray(beat_times_s, dtype=np.float64)
    sample_count = round(duration_s * sample_rate_hz)
    ecg = np.zeros(sample_count)
    for index, beat_s in enumerate(beats):
        scale = _qt_scale(beats, index) if rate_adapted else 1.0
        for name, (offset_s, fraction, sigma_s) in zip("PQRST", waves, strict=True):
            if name in "PT":
                offset_s, sigma_s = offset_s * scale, sigma_s * scale
            _add_gaussian(
                ecg,
                beat_s + offset_s,
                fraction * r_amplitude_mv,
                sigma_s,
                sample_rate_hz,
            )
    return ecg


def _qt_scale(beats: np.ndarray, index: int) -> float:
    """Return sqrt(RR / 1 s) for the RR interval ending at beat `index`, capped at 1."""
    if beats.size < 2:
        return 1.0
    rr_s = beats[index] - beats[index - 1] if index > 0 else beats[1] - beats[0]
    return float(np.sqrt(np.clip(rr_s, 0.0, 1.0)))


# Wide ventricular complex without a P wave: (offset s, fraction of R, sigma s).
_VENTRICULAR_WAVES = (
    (0.000, 1.00, 0.035),  # broad R
    (0.090, -0.50, 0.035),  # broad S
    (0.330, -0.35, 0.060),  # discordant T
)


def ventricular_ecg(
    beat_times_s: Sequence[float] | np.ndarray,
    duration_s: float,
    sample_rate_hz: float,
    r_amplitude_mv: float = 1.2,
) -> np.ndarray:
    """Return wide ventricular complexes (QRS about 200 ms) at the given times (mV)."""
    sample_count = round(duration_s * sample_rate_hz)
    ecg = np.zeros(sample_count)
    for beat_s in beat_times_s:
        for offset_s, fraction, sigma_s in _VENTRICULAR_WAVES:
            _add_gaussian(
                ecg, beat_s + offset_s, fraction * r_amplitude_mv, sigma_s, sample_rate_hz
            )
    return ecg


def fibrillation_ecg(
    start_s: float,
    stop_s: float,
    duration_s: float,
    sample_rate_hz: float,
    dominant_hz: float = 5.0,
    amplitude_mv: float = 0.6,
    seed: int = 0,
) -> np.ndarray:
    """Return a fibrillation-like oscillation between `start_s` and `stop_s` (mV).

    The frequency wanders by up to +-0.8 Hz around `dominant_hz` and the amplitude by
    +-40 %, both slowly, so the waveform is irregular but has no QRS complexes.
    """
    rng = np.random.default_rng(seed)
    sample_count = round(duration_s * sample_rate_hz)
    t = np.arange(sample_count) / sample_rate_hz
    knots = np.arange(0.0, duration_s + 1.0, 0.5)
    wander = np.interp(t, knots, rng.uniform(-0.8, 0.8, knots.size))
    envelope = np.interp(t, knots, rng.uniform(0.6, 1.4, knots.size))
    phase = 2.0 * np.pi * np.cumsum(dominant_hz + wander) / sample_rate_hz
    wave = amplitude_mv * envelope * np.sin(phase)
    wave[(t < start_s) | (t >= stop_s)] = 0.0
    return wave


def _add_gaussian(
    ecg: np.ndarray, centre_s: float, height_mv: float, sigma_s: float, fs: float
) -> None:
    centre = centre_s * fs
    half_span = _WAVE_SPAN_SIGMAS * sigma_s * fs
    first = max(0, int(np.floor(centre - half_span)))
    last = min(ecg.size, int(np.ceil(centre + half_span)) + 1)
    if first >= last:
        return
    t = (np.arange(first, last) - centre) / (sigma_s * fs)
    ecg[first:last] += height_mv * np.exp(-0.5 * t * t)


# Pulse wave of one heartbeat at the finger: (offset after the R peak in s, amplitude
# as a fraction of the pulse, sigma in s). The systolic peak arrives about 0.3 s after
# the R peak, and a smaller diastolic wave follows it.
_PULSE_WAVES = (
    (0.30, 1.00, 0.080),  # systolic peak
    (0.55, 0.35, 0.090),  # diastolic (dicrotic) wave
)


def pleth_wave(
    beat_times_s: Sequence[float] | np.ndarray,
    duration_s: float,
    sample_rate_hz: float,
    amplitude: float = 1.0,
    baseline: float = 0.5,
) -> np.ndarray:
    """Return a plethysmogram with a smooth pulse per beat time, in arbitrary units."""
    sample_count = round(duration_s * sample_rate_hz)
    wave = np.full(sample_count, baseline)
    for beat_s in beat_times_s:
        for offset_s, fraction, sigma_s in _PULSE_WAVES:
            _add_gaussian(
                wave, beat_s + offset_s, fraction * amplitude, sigma_s, sample_rate_hz
            )
    return wave
