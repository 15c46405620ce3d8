"""Alarms raised by EcgAnalyzer on synthetic ECG, end to end from samples."""

import numpy as np
import pytest

from edge_agent.dsp import AnalyzerSettings, EcgAnalyzer
from edge_agent.dsp.synthetic import beat_times_at_rate, synthetic_ecg

# On a flat line the detector declares a stretch beat-free 20 ms after it arrives, so
# an alarm may be reported up to one chunk plus that much after its onset.
FLAT_LINE_HORIZON_LAG_S = 0.020

# These tests cover the PhysioNet 2015 rules alone: no vital-sign limits, and alarms
# clear when their condition ends instead of latching.
PHYSIONET_ONLY = AnalyzerSettings(latching=False, limits=())


def _analyse(
    ecg: np.ndarray,
    sample_rate_hz: float,
    chunk_s: float = 1.0,
    settings: AnalyzerSettings = PHYSIONET_ONLY,
):
    """Return (time at the end of the chunk that reported it, change) pairs of the
    physiological alarms."""
    analyzer = EcgAnalyzer(sample_rate_hz, settings)
    chunk = round(chunk_s * sample_rate_hz)
    changes = []
    for begin in range(0, ecg.size, chunk):
        result = analyzer.process(ecg[begin : begin + chunk])
        end_s = min(begin + chunk, ecg.size) / sample_rate_hz
        changes.extend(
            (end_s, change)
            for change in result.alarms
            if change.category == "physiological"
        )
    return changes


@pytest.mark.parametrize("sample_rate_hz", [125.0, 250.0, 360.0])
def test_normal_rhythm_raises_nothing(sample_rate_hz: float) -> None:
    duration_s = 120.0
    ecg = synthetic_ecg(beat_times_at_rate(75, duration_s), duration_s, sample_rate_hz)
    assert _analyse(ecg, sample_rate_hz) == []


@pytest.mark.parametrize("stop_s", [10.0, 10.3, 10.7, 11.0])
@pytest.mark.parametrize("chunk_s", [0.25, 0.5, 1.0])
def test_asystole_raised_promptly_and_cleared(stop_s: float, chunk_s: float) -> None:
    sample_rate_hz, duration_s, restart_s = 250.0, 30.0, 20.0
    before = beat_times_at_rate(75, stop_s)
    after = beat_times_at_rate(75, duration_s, start_s=restart_s)
    ecg = synthetic_ecg(np.concatenate((before, after)), duration_s, sample_rate_hz)
    changes = _analyse(ecg, sample_rate_hz, chunk_s)
    assert [(c.kind, c.state, c.priority) for _, c in changes] == [
        ("asystole", "raised", "high"),
        ("asystole", "cleared", "high"),
    ]
    (raised_at_s, raised), (cleared_at_s, cleared) = changes
    onset_s = raised.onset_sample / sample_rate_hz
    assert onset_s == pytest.approx(before[-1] + 4.0, abs=0.01)
    latency_s = raised_at_s - onset_s
    print(
        f"stop {stop_s} s, chunk {chunk_s} s: asystole reported {latency_s:.2f} s late"
    )
    assert 0.0 <= latency_s <= chunk_s + FLAT_LINE_HORIZON_LAG_S
    # Cleared by the second beat after the pause.
    assert cleared.onset_sample / sample_rate_hz == pytest.approx(after[1], abs=0.01)
    assert cleared_at_s <= after[1] + 1.5


def test_asystole_on_flat_line_from_start() -> None:
    changes = _analyse(np.zeros(250 * 10), 250.0, chunk_s=0.5)
    assert [(c.kind, c.state) for _, c in changes] == [("asystole", "raised")]
    reported_at_s, change = changes[0]
    assert change.onset_sample == 4 * 250
    assert reported_at_s <= 5.0


def test_asystole_on_flat_line_with_noise() -> None:
    sample_rate_hz = 360.0
    before = beat_times_at_rate(75, 10.0)
    ecg = synthetic_ecg(before, 20.0, sample_rate_hz)
    ecg += np.random.default_rng(8).normal(0.0, 0.05, ecg.size)
    changes = _analyse(ecg, sample_rate_hz, chunk_s=0.5)
    assert [(c.kind, c.state) for _, c in changes] == [("asystole", "raised")]
    reported_at_s, change = changes[0]
    assert reported_at_s - change.onset_sample / sample_rate_hz <= 1.0


def test_extreme_bradycardia_at_35_bpm() -> None:
    sample_rate_hz, duration_s = 250.0, 40.0
    ecg = synthetic_ecg(beat_times_at_rate(35, duration_s), duration_s, sample_rate_hz)
    changes = _analyse(ecg, sample_rate_hz)
    assert [(c.kind, c.state, c.priority) for _, c in changes] == [
        ("extreme_bradycardia", "raised", "high")
    ]
    assert "below 40 bpm" in changes[0][1].evidence


def test_extreme_tachycardia_at_160_bpm() -> None:
    sample_rate_hz, duration_s = 250.0, 30.0
    ecg = synthetic_ecg(beat_times_at_rate(160, duration_s), duration_s, sample_rate_hz)
    changes = _analyse(ecg, sample_rate_hz)
    assert [(c.kind, c.state, c.priority) for _, c in changes] == [
        ("extreme_tachycardia", "raised", "high")
    ]
    assert "above 140 bpm" in changes[0][1].evidence


@pytest.mark.parametrize("rate_bpm", [45, 130])
def test_rates_inside_limits_raise_nothing(rate_bpm: float) -> None:
    sample_rate_hz, duration_s = 250.0, 60.0
    ecg = synthetic_ecg(beat_times_at_rate(rate_bpm, duration_s), duration_s, 250.0)
    assert _analyse(ecg, sample_rate_hz) == []


def test_tachycardia_clears_when_rate_returns() -> None:
    sample_rate_hz = 250.0
    fast = beat_times_at_rate(160, 20.0)
    normal = beat_times_at_rate(75, 40.0, start_s=fast[-1] + 0.8)
    ecg = synthetic_ecg(np.concatenate((fast, normal)), 40.0, sample_rate_hz)
    changes = _analyse(ecg, sample_rate_hz)
    assert [(c.kind, c.state) for _, c in changes] == [
        ("extreme_tachycardia", "raised"),
        ("extreme_tachycardia", "cleared"),
    ]
