import math

import numpy as np
import pytest

from edge_agent.dsp import AlarmChange, AnalyzerSettings, ChunkAnalysis, EcgAnalyzer
from edge_agent.dsp.synthetic import beat_times_at_rate, synthetic_ecg


def _run(analyzer: EcgAnalyzer, ecg: np.ndarray, chunk: int) -> list[ChunkAnalysis]:
    return [analyzer.process(ecg[i : i + chunk]) for i in range(0, ecg.size, chunk)]


def test_analyzer_reports_beats_rate_and_quality() -> None:
    sample_rate_hz, duration_s = 500.0, 20.0
    beat_times = beat_times_at_rate(75, duration_s)
    analyzer = EcgAnalyzer(sample_rate_hz)
    results = _run(analyzer, synthetic_ecg(beat_times, duration_s, 500.0), 500)
    beats = [beat for result in results for beat in result.beat_samples]
    assert len(beats) >= beat_times.size - 1
    assert analyzer.samples_seen == round(duration_s * sample_rate_hz)
    assert results[1].heart_rate_bpm is None
    assert results[-1].heart_rate_bpm == pytest.approx(75.0, abs=0.5)
    assert all(result.signal_quality > 0.9 for result in results)
    assert not any(result.leads_off for result in results)
    assert all(result.alarms == [] for result in results)


def test_analyzer_reports_rate_per_beat() -> None:
    analyzer = EcgAnalyzer(250.0)
    ecg = synthetic_ecg(beat_times_at_rate(60, 15.0), 15.0, 250.0)
    results = _run(analyzer, ecg, 250)
    rates = [rate for result in results for rate in result.beat_heart_rates_bpm]
    beats = [beat for result in results for beat in result.beat_samples]
    assert len(rates) == len(beats)
    assert rates[:4] == [None] * 4
    assert rates[-1] == pytest.approx(60.0)


def test_analyzer_survives_nonfinite_samples() -> None:
    sample_rate_hz = 250.0
    ecg = synthetic_ecg(beat_times_at_rate(75, 20.0), 20.0, sample_rate_hz)
    ecg[1000:1500] = np.nan
    ecg[3000:3005] = np.inf
    analyzer = EcgAnalyzer(sample_rate_hz)
    for result in _run(analyzer, ecg, 125):
        assert not math.isnan(result.signal_quality)
        assert 0.0 <= result.signal_quality <= 1.0
        assert result.heart_rate_bpm is None or math.isfinite(result.heart_rate_bpm)


def test_analyzer_quality_zero_on_all_nan() -> None:
    analyzer = EcgAnalyzer(250.0)
    result = analyzer.process(np.full(250, np.nan))
    assert result.signal_quality == 0.0
    assert result.leads_off


def test_analyzer_flat_line_flags_leads_off() -> None:
    analyzer = EcgAnalyzer(250.0)
    results = _run(analyzer, np.zeros(250 * 6), 250)
    assert results[-1].leads_off
    assert results[-1].signal_quality == 0.0
    assert results[-1].heart_rate_bpm is None


def test_analyzer_accepts_empty_chunk() -> None:
    analyzer = EcgAnalyzer(250.0)
    result = analyzer.process(np.zeros(0))
    assert result.beat_samples == []
    assert analyzer.samples_seen == 0


def test_analyzer_rejects_two_dimensional_input() -> None:
    with pytest.raises(ValueError, match="one-dimensional"):
        EcgAnalyzer(250.0).process(np.zeros((10, 2)))


@pytest.mark.parametrize("sample_rate_hz", [100.0, 2000.0])
def test_analyzer_rejects_unsupported_rate(sample_rate_hz: float) -> None:
    with pytest.raises(ValueError, match="sample_rate_hz"):
        EcgAnalyzer(sample_rate_hz)


def test_analyzer_mains_60_hz_at_125_hz() -> None:
    analyzer = EcgAnalyzer(125.0, AnalyzerSettings(mains_hz=60.0))
    ecg = synthetic_ecg(beat_times_at_rate(75, 10.0), 10.0, 125.0)
    t = np.arange(ecg.size) / 125.0
    results = _run(analyzer, ecg + 0.3 * np.sin(2 * np.pi * 60.0 * t), 125)
    assert sum(len(result.beat_samples) for result in results) >= 11


def test_analyzer_uses_custom_asystole_limit() -> None:
    settings = AnalyzerSettings(asystole_s=6.0)
    analyzer = EcgAnalyzer(250.0, settings)
    results = _run(analyzer, np.zeros(250 * 8), 125)
    changes: list[AlarmChange] = [c for result in results for c in result.alarms]
    assert [(c.kind, c.state, c.category) for c in changes] == [
        ("leads_off", "raised", "technical"),
        ("asystole", "raised", "physiological"),
    ]
    assert changes[1].onset_sample == 6 * 250
    assert set(analyzer.active_alarms) == {"asystole", "leads_off"}


def test_default_settings_are_physionet_2015() -> None:
    settings = AnalyzerSettings()
    assert settings.mains_hz == 50.0
    assert settings.asystole_s == 4.0
    assert (settings.bradycardia_bpm, settings.bradycardia_beats) == (40.0, 5)
    assert (settings.tachycardia_bpm, settings.tachycardia_beats) == (140.0, 17)
