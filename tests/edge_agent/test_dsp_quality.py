import math

import numpy as np
import pytest

from edge_agent.dsp.quality import assess_signal_quality
from edge_agent.dsp.synthetic import beat_times_at_rate, synthetic_ecg

SAMPLE_RATE_HZ = 360.0


def _clean_ecg(seconds: float = 2.0) -> np.ndarray:
    return synthetic_ecg(beat_times_at_rate(75, seconds, 0.3), seconds, SAMPLE_RATE_HZ)


def test_quality_of_clean_ecg_is_high() -> None:
    quality = assess_signal_quality(_clean_ecg() + 0.7, SAMPLE_RATE_HZ)
    assert quality.index > 0.95
    assert not quality.flat


def test_quality_ignores_baseline_drift() -> None:
    ecg = _clean_ecg()
    drift = np.linspace(-2.0, 2.0, ecg.size)
    assert assess_signal_quality(ecg + drift, SAMPLE_RATE_HZ).index > 0.95


@pytest.mark.parametrize("level_mv", [0.0, 3.0])
def test_quality_of_flat_line_is_zero(level_mv: float) -> None:
    quality = assess_signal_quality(np.full(720, level_mv), SAMPLE_RATE_HZ)
    assert quality.index == 0.0
    assert quality.flat


def test_quality_of_heavy_noise_is_low() -> None:
    rng = np.random.default_rng(4)
    noisy = _clean_ecg() + rng.normal(0.0, 0.3, 720)
    quality = assess_signal_quality(noisy, SAMPLE_RATE_HZ)
    assert quality.index < 0.3
    assert quality.noise_ratio > 0.5


def test_quality_of_noise_only_is_zero() -> None:
    rng = np.random.default_rng(4)
    quality = assess_signal_quality(rng.normal(0.0, 0.05, 720), SAMPLE_RATE_HZ)
    assert quality.index == 0.0


def test_quality_falls_with_missing_samples() -> None:
    ecg = _clean_ecg()
    ecg[:360] = np.nan
    ecg[400] = np.inf
    quality = assess_signal_quality(ecg, SAMPLE_RATE_HZ)
    assert quality.nonfinite_fraction == pytest.approx(361 / 720)
    assert 0.3 < quality.index < 0.5


@pytest.mark.parametrize("size", [0, 1, 720])
def test_quality_all_missing_is_zero(size: int) -> None:
    quality = assess_signal_quality(np.full(size, np.nan), SAMPLE_RATE_HZ)
    assert quality.index == 0.0
    assert not math.isnan(quality.index)
    assert quality.flat


def test_quality_detects_clipping() -> None:
    clipped = np.clip(_clean_ecg() * 3.0, -0.5, 0.5)
    quality = assess_signal_quality(clipped, SAMPLE_RATE_HZ)
    assert quality.saturated_fraction > 0.02
    assert quality.index < 1.0


def test_quality_of_short_chunk_is_finite() -> None:
    quality = assess_signal_quality(_clean_ecg()[:10], SAMPLE_RATE_HZ)
    assert 0.0 <= quality.index <= 1.0
