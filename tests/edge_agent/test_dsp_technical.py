"""Settings checks, technical conditions and technical alarms of EcgAnalyzer."""

import math

import numpy as np
import pytest

from edge_agent.dsp import AnalyzerSettings, EcgAnalyzer
from edge_agent.dsp.synthetic import beat_times_at_rate, synthetic_ecg

NO_LIMITS = AnalyzerSettings(limits=())


def _ecg(duration_s: float, sample_rate_hz: float = 250.0) -> np.ndarray:
    return synthetic_ecg(beat_times_at_rate(75, duration_s), duration_s, sample_rate_hz)


def _run(analyzer: EcgAnalyzer, ecg: np.ndarray, chunk: int = 125):
    return [analyzer.process(ecg[i : i + chunk]) for i in range(0, ecg.size, chunk)]


@pytest.mark.parametrize(
    ("settings", "sample_rate_hz", "parameter"),
    [
        (AnalyzerSettings(), 100.0, "sample_rate_hz"),
        (AnalyzerSettings(mains_hz=60.0), 110.0, "sample_rate_hz"),
    ],
)
def test_settings_check_names_parameter(settings, sample_rate_hz, parameter) -> None:
    with pytest.raises(ValueError, match=parameter):
        settings.check(sample_rate_hz)


def test_settings_reject_invalid_values() -> None:
    with pytest.raises(ValueError, match="mains_hz"):
        AnalyzerSettings(mains_hz=55.0)
    with pytest.raises(ValueError, match="asystole_s"):
        AnalyzerSettings(asystole_s=0.0)
    with pytest.raises(ValueError, match="bradycardia_bpm"):
        AnalyzerSettings(bradycardia_bpm=150.0)


def test_settings_check_accepts_supported_rates() -> None:
    for sample_rate_hz in (125.0, 250.0, 360.0, 500.0, 1000.0):
        AnalyzerSettings(mains_hz=60.0).check(sample_rate_hz)


def test_clean_ecg_has_no_technical_condition() -> None:
    results = _run(EcgAnalyzer(250.0, NO_LIMITS), _ecg(20.0))
    assert all(result.technical == frozenset() for result in results)
    assert all(result.alarms == [] for result in results)


def test_nonfinite_flagged_and_never_nan() -> None:
    ecg = _ecg(20.0)
    ecg[2500:2600] = np.nan
    results = _run(EcgAnalyzer(250.0, NO_LIMITS), ecg)
    flagged = [i for i, result in enumerate(results) if "nonfinite" in result.technical]
    assert flagged == [20]
    for result in results:
        assert math.isfinite(result.signal_quality)
        assert np.all(np.isfinite(result.filtered_mv))


def test_leads_off_alarm_within_1_s_of_definition() -> None:
    # Leads off: flat for the 2 s quality window, then the 1 s condition delay.
    ecg = _ecg(30.0)
    ecg[round(10 * 250) :] = 0.0
    analyzer = EcgAnalyzer(250.0, NO_LIMITS)
    raised = None
    for index, result in enumerate(_run(analyzer, ecg)):
        for change in result.alarms:
            if change.kind == "leads_off" and raised is None:
                raised = ((index + 1) * 125 / 250.0, change)
    assert raised is not None
    reported_s, change = raised
    assert change.category == "technical"
    assert change.priority == "medium"
    assert reported_s - (10.0 + 2.0 + 1.0) <= 1.0


def test_saturation_flagged() -> None:
    ecg = np.clip(_ecg(10.0) * 3.0, -0.2, 0.2)
    results = _run(EcgAnalyzer(250.0, NO_LIMITS), ecg)
    assert "saturated" in results[-1].technical


def test_noisy_signal_alarm() -> None:
    rng = np.random.default_rng(3)
    ecg = _ecg(20.0) + rng.normal(0.0, 0.5, 5000)
    changes = [c for r in _run(EcgAnalyzer(250.0, NO_LIMITS), ecg) for c in r.alarms]
    assert ("signal_noisy", "raised") in [(c.kind, c.state) for c in changes]


def test_agent_conditions_and_rate_mismatch() -> None:
    analyzer = EcgAnalyzer(250.0, NO_LIMITS)
    analyzer.process(_ecg(2.0))
    raised = analyzer.set_condition("link_lost", True, "central unreachable")
    assert [(c.kind, c.state, c.onset_sample) for c in raised] == [
        ("link_lost", "raised", 500)
    ]
    assert analyzer.report_measured_sample_rate(249.0) == []
    mismatch = analyzer.report_measured_sample_rate(240.0)
    assert [c.kind for c in mismatch] == ["sample_rate_mismatch"]
    assert "240.0 Hz" in mismatch[0].evidence


def test_heart_rate_limit_alarm() -> None:
    sample_rate_hz, duration_s = 250.0, 40.0
    ecg = synthetic_ecg(beat_times_at_rate(130, duration_s), duration_s, 250.0)
    analyzer = EcgAnalyzer(sample_rate_hz)
    changes = [c for r in _run(analyzer, ecg, 250) for c in r.alarms]
    assert [(c.kind, c.priority) for c in changes] == [("heart_rate_high", "medium")]


def test_latched_asystole_cleared_by_acknowledge() -> None:
    before = beat_times_at_rate(75, 10.0)
    after = beat_times_at_rate(75, 30.0, start_s=17.0)
    ecg = synthetic_ecg(np.concatenate((before, after)), 30.0, 250.0)
    analyzer = EcgAnalyzer(250.0, NO_LIMITS)
    changes = [c for r in _run(analyzer, ecg) for c in r.alarms]
    physiological = [(c.kind, c.state) for c in changes if c.category != "technical"]
    assert physiological == [("asystole", "raised")]
    assert "asystole" in analyzer.active_alarms
    cleared = analyzer.acknowledge("asystole")
    assert [(c.kind, c.state) for c in cleared] == [("asystole", "cleared")]
