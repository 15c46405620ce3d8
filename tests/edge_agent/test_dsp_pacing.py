"""Pacemaker pulses, fast rates and tall T waves through the QRS detector."""

import numpy as np
import pytest

from edge_agent.dsp import AnalyzerSettings, EcgAnalyzer
from edge_agent.dsp.beats import QrsDetector
from edge_agent.dsp.pacing import PaceSpikeRemover
from edge_agent.dsp.synthetic import beat_times_at_rate, synthetic_ecg


def _detect(ecg: np.ndarray, sample_rate_hz: float) -> np.ndarray:
    detector = QrsDetector(sample_rate_hz)
    chunk = round(sample_rate_hz)
    beats: list[int] = []
    for begin in range(0, ecg.size, chunk):
        beats.extend(detector.process(ecg[begin : begin + chunk]))
    return np.array(beats) / sample_rate_hz


def _count_between(times_s: np.ndarray, first_s: float, last_s: float) -> int:
    return int(np.count_nonzero((times_s >= first_s) & (times_s < last_s)))


@pytest.mark.parametrize("sample_rate_hz", [125.0, 250.0, 500.0, 1000.0])
def test_pace_spikes_alone_are_not_beats(sample_rate_hz: float) -> None:
    # Pacemaker pulses with no capture: 5 mV, 1 ms wide, at 70/min on a flat line.
    ecg = np.zeros(round(20 * sample_rate_hz))
    width = max(1, round(0.001 * sample_rate_hz))
    for start_s in np.arange(0.5, 20.0, 60.0 / 70.0):
        begin = round(start_s * sample_rate_hz)
        ecg[begin : begin + width] += 5.0
    assert _detect(ecg, sample_rate_hz).size == 0


@pytest.mark.parametrize("sample_rate_hz", [250.0, 360.0])
def test_paced_beats_counted_once(sample_rate_hz: float) -> None:
    beat_times = beat_times_at_rate(70, 20.0)
    ecg = synthetic_ecg(beat_times, 20.0, sample_rate_hz)
    for beat_s in beat_times:
        ecg[round((beat_s - 0.04) * sample_rate_hz)] += 8.0  # pulse 40 ms before QRS
    detected = _detect(ecg, sample_rate_hz)
    expected = _count_between(beat_times, 3.0, 19.0)
    assert _count_between(detected, 3.0, 19.0) == expected


def test_pace_spike_samples_reported() -> None:
    analyzer = EcgAnalyzer(500.0)
    ecg = np.zeros(1000)
    ecg[400] = -6.0
    result = analyzer.process(ecg)
    assert result.pace_spike_samples == [400]


def test_spike_remover_keeps_chunking_invariant() -> None:
    signal = np.sin(np.arange(3000) / 50.0)
    signal[[700, 1500, 1501]] += 4.0
    whole = PaceSpikeRemover(500.0).process(signal)
    remover = PaceSpikeRemover(500.0)
    pieces = [remover.process(signal[i : i + 7]) for i in range(0, signal.size, 7)]
    assert np.allclose(np.concatenate(pieces), whole)
    assert np.max(np.abs(whole - signal[: whole.size])) > 3.9


@pytest.mark.parametrize("sample_rate_hz", [125.0, 250.0, 500.0])
@pytest.mark.parametrize("rate_bpm", [30, 200, 250, 300])
@pytest.mark.parametrize("t_wave_mv", [0.3, 1.2])
def test_rates_30_to_300_bpm_with_tall_t(
    sample_rate_hz: float, rate_bpm: float, t_wave_mv: float
) -> None:
    duration_s = 30.0
    beat_times = beat_times_at_rate(rate_bpm, duration_s)
    ecg = synthetic_ecg(
        beat_times, duration_s, sample_rate_hz, t_wave_fraction=t_wave_mv, rate_adapted=True
    )
    detected = _detect(ecg, sample_rate_hz)
    expected = _count_between(beat_times, 3.0, duration_s - 0.6)
    assert _count_between(detected, 3.0, duration_s - 0.6) == expected


@pytest.mark.parametrize("rate_bpm", [30, 75, 300])
def test_heart_rate_within_tolerance(rate_bpm: float) -> None:
    sample_rate_hz, duration_s = 250.0, 40.0
    ecg = synthetic_ecg(
        beat_times_at_rate(rate_bpm, duration_s), duration_s, sample_rate_hz,
        rate_adapted=True,
    )
    analyzer = EcgAnalyzer(sample_rate_hz, AnalyzerSettings(limits=()))
    rate = None
    for begin in range(0, ecg.size, 250):
        result = analyzer.process(ecg[begin : begin + 250])
        rate = result.heart_rate_bpm if result.heart_rate_bpm is not None else rate
    assert rate is not None
    assert abs(rate - rate_bpm) <= max(5.0, 0.1 * rate_bpm)
