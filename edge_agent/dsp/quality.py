"""Signal quality index of a stretch of raw ECG.

The index is the product of three scores between 0 and 1: the finite fraction of the
samples, the fraction not stuck at the amplifier's rails, and a high-frequency noise
score. It is 0 for a flat line (no signal or leads off).
"""

import logging
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from edge_agent.dsp.filters import hold_nonfinite

logger = logging.getLogger(__name__)

# Below this peak-to-peak (mV), after removing a linear trend, the window counts as a
# flat line: no signal or leads off.
FLAT_MAX_PEAK_TO_PEAK_MV = 0.05

# In 2 s windows of MIT-BIH record 100 and PhysioNet 2015 record a103l, at most 1.3 % of
# the samples (typically 0.3 %) sit at the window's minimum or maximum, so a larger
# share means a clipped signal.
SATURATION_MIN_FRACTION = 0.02

# Noise is the power density in the noise band, times a reference bandwidth, relative
# to the ECG-band power. Using the density keeps the figure for a given noise spectrum
# independent of how much of the band lies below Nyquist. Mains bins are left out
# because the notch filter removes them.
ECG_BAND_HZ = (0.5, 40.0)
NOISE_BAND_HZ = (40.0, 150.0)
NOISE_REFERENCE_BANDWIDTH_HZ = 60.0
MAINS_FREQUENCIES_HZ = (50.0, 60.0)
MAINS_EXCLUSION_HZ = 2.0
# Noise ratios below the first value score 1, above the second 0, linear between.
# Over 2 s windows, 99.5 % of MIT-BIH record 100 and PhysioNet 2015 record a103l
# measure below 0.12. A 1 mV synthetic ECG with 0.2 mV RMS of white noise sampled at
# 360 Hz measures about 0.4.
NOISE_RATIO_GOOD = 0.1
NOISE_RATIO_BAD = 0.5
# Shorter stretches get no noise score, because their spectrum is too coarse.
MIN_NOISE_WINDOW_S = 0.5


@dataclass(frozen=True)
class SignalQuality:
    """Quality of one stretch of ECG."""

    index: float  # 0 (unusable) to 1 (clean), never NaN
    flat: bool  # flat line: no signal or leads off
    nonfinite_fraction: float
    saturated_fraction: float
    noise_ratio: float


def assess_signal_quality(
    samples_mv: np.ndarray, sample_rate_hz: float
) -> SignalQuality:
    """Rate a stretch of raw samples (mV), which may contain NaN or infinities."""
    raw = np.asarray(samples_mv, dtype=np.float64).ravel()
    if raw.size == 0:
        return SignalQuality(0.0, True, 0.0, 0.0, 0.0)
    finite = np.isfinite(raw)
    nonfinite_fraction = 1.0 - float(np.count_nonzero(finite)) / raw.size
    if np.count_nonzero(finite) < 2:
        return SignalQuality(0.0, True, nonfinite_fraction, 0.0, 0.0)

    filled, _ = hold_nonfinite(raw, float(raw[finite][0]))
    detrended = _detrend(filled)
    if np.ptp(detrended) < FLAT_MAX_PEAK_TO_PEAK_MV:
        return SignalQuality(0.0, True, nonfinite_fraction, 0.0, 0.0)

    saturated_fraction = _saturated_fraction(filled[finite])
    noise_ratio = _noise_ratio(detrended, sample_rate_hz)
    noise_score = (NOISE_RATIO_BAD - noise_ratio) / (NOISE_RATIO_BAD - NOISE_RATIO_GOOD)
    index = (
        (1.0 - nonfinite_fraction)
        * (1.0 - saturated_fraction)
        * float(np.clip(noise_score, 0.0, 1.0))
    )
    return SignalQuality(
        index=float(np.clip(index, 0.0, 1.0)),
        flat=False,
        nonfinite_fraction=nonfinite_fraction,
        saturated_fraction=saturated_fraction,
        noise_ratio=noise_ratio,
    )


def _detrend(samples: np.ndarray) -> np.ndarray:
    """Subtract the least-squares straight line (closed form, faster than polyfit)."""
    positions = np.arange(samples.size, dtype=np.float64)
    positions -= positions.mean()
    centred = samples - samples.mean()
    slope = float(positions @ centred) / float(positions @ positions)
    return centred - slope * positions


def _saturated_fraction(samples: np.ndarray) -> float:
    at_rail = (samples >= samples.max()) | (samples <= samples.min())
    fraction = float(np.count_nonzero(at_rail)) / samples.size
    return fraction if fraction >= SATURATION_MIN_FRACTION else 0.0


def _noise_ratio(samples: np.ndarray, sample_rate_hz: float) -> float:
    if samples.size < MIN_NOISE_WINDOW_S * sample_rate_hz:
        return 0.0
    taper, ecg_band, noise_band = _spectrum_setup(samples.size, sample_rate_hz)
    power = np.abs(np.fft.rfft(samples * taper)) ** 2
    ecg_power = float(power[ecg_band].sum())
    if not noise_band.any() or ecg_power <= 0.0:
        return 0.0
    bin_width_hz = sample_rate_hz / samples.size
    noise_density = float(power[noise_band].mean()) / bin_width_hz
    return float(noise_density * NOISE_REFERENCE_BANDWIDTH_HZ / ecg_power)


@lru_cache(maxsize=8)
def _spectrum_setup(
    size: int, sample_rate_hz: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return the taper and the ECG and noise band masks for one window length.

    A stream rates windows of the same length over and over, so they are cached.
    """
    frequencies = np.fft.rfftfreq(size, 1.0 / sample_rate_hz)
    ecg_band = (frequencies >= ECG_BAND_HZ[0]) & (frequencies < ECG_BAND_HZ[1])
    noise_band = (frequencies >= NOISE_BAND_HZ[0]) & (frequencies < NOISE_BAND_HZ[1])
    for mains_hz in MAINS_FREQUENCIES_HZ:
        noise_band &= np.abs(frequencies - mains_hz) > MAINS_EXCLUSION_HZ
    return np.hanning(size), ecg_band, noise_band
