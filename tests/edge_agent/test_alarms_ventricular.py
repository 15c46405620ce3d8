"""Ventricular tachycardia and fibrillation alarms from synthetic ECG, end to end."""

import numpy as np
import pytest

from edge_agent.dsp import AnalyzerSettings, EcgAnalyzer
from edge_agent.dsp.synthetic import (
    beat_times_at_rate,
    fibrillation_ecg,
    synthetic_ecg,
    ventricular_ecg,
)

SETTINGS = AnalyzerSettings(limits=())


def _raised(ecg: np.ndarray, sample_rate_hz: float, chunk_s: float = 0.5):
    """Return {kind: (time reported, onset time)} of the first raise of each kind."""
    analyzer = EcgAnalyzer(sample_rate_hz, SETTINGS)
    chunk = round(chunk_s * sample_rate_hz)
    raised: dict[str, tuple[float, float]] = {}
    for begin in range(0, ecg.size, chunk):
        for change in analyzer.process(ecg[begin : begin + chunk]).alarms:
            if change.state == "raised" and change.kind not in raised:
                reported_s = min(begin + chunk, ecg.size) / sample_rate_hz
                raised[change.kind] = (reported_s, change.onset_sample / sample_rate_hz)
    return raised


@pytest.mark.parametrize("sample_rate_hz", [250.0, 360.0])
def test_ventricular_run_raises_vt_within_1_s(sample_rate_hz: float) -> None:
    normal = beat_times_at_rate(75, 12.0)
    # 8 beats at 150 bpm, the first after a pause that leaves the T wave behind.
    run = normal[-1] + 0.6 + np.arange(8) * 0.4
    after = beat_times_at_rate(75, 30.0, start_s=run[-1] + 0.8)
    ecg = synthetic_ecg(np.concatenate((normal, after)), 30.0, sample_rate_hz)
    ecg += ventricular_ecg(run, 30.0, sample_rate_hz)
    raised = _raised(ecg, sample_rate_hz)
    assert "ventricular_tachycardia" in raised
    reported_s, onset_s = raised["ventricular_tachycardia"]
    definition_met_s = run[4]  # the fifth ventricular beat
    print(f"VT reported {reported_s - definition_met_s:.2f} s after the 5th beat")
    assert onset_s == pytest.approx(definition_met_s, abs=0.05)
    assert reported_s - definition_met_s <= 1.0
    assert "ventricular_flutter_fibrillation" not in raised


def test_four_ventricular_beats_raise_no_vt() -> None:
    sample_rate_hz = 250.0
    normal = beat_times_at_rate(75, 12.0)
    run = normal[-1] + 0.6 + np.arange(4) * 0.4
    after = beat_times_at_rate(75, 30.0, start_s=run[-1] + 0.8)
    ecg = synthetic_ecg(np.concatenate((normal, after)), 30.0, sample_rate_hz)
    ecg += ventricular_ecg(run, 30.0, sample_rate_hz)
    assert "ventricular_tachycardia" not in _raised(ecg, sample_rate_hz)


def test_slow_ventricular_rhythm_raises_no_vt() -> None:
    sample_rate_hz = 250.0
    normal = beat_times_at_rate(75, 12.0)
    run = normal[-1] + 0.8 + np.arange(8) * 0.8  # 75 bpm idioventricular
    ecg = synthetic_ecg(normal, 30.0, sample_rate_hz)
    ecg += ventricular_ecg(run, 30.0, sample_rate_hz)
    assert "ventricular_tachycardia" not in _raised(ecg, sample_rate_hz)


@pytest.mark.parametrize("dominant_hz", [3.5, 5.0, 7.0])
def test_fibrillation_raises_within_1_s(dominant_hz: float) -> None:
    sample_rate_hz, start_s = 250.0, 12.0
    normal = beat_times_at_rate(75, start_s)
    ecg = synthetic_ecg(normal, 30.0, sample_rate_hz)
    ecg += fibrillation_ecg(start_s, 30.0, 30.0, sample_rate_hz, dominant_hz)
    raised = _raised(ecg, sample_rate_hz)
    assert "ventricular_flutter_fibrillation" in raised
    reported_s, _ = raised["ventricular_flutter_fibrillation"]
    delay_s = reported_s - (start_s + 4.0)
    print(f"VF at {dominant_hz} Hz reported {delay_s:.2f} s after 4 s of it")
    assert -0.5 <= delay_s <= 1.0
    assert "asystole" not in raised


@pytest.mark.parametrize("rate_bpm", [40, 75, 150, 240])
def test_sinus_rhythms_raise_no_ventricular_alarm(rate_bpm: float) -> None:
    sample_rate_hz, duration_s = 250.0, 40.0
    ecg = synthetic_ecg(
        beat_times_at_rate(rate_bpm, duration_s), duration_s, sample_rate_hz,
        rate_adapted=True,
    )
    raised = _raised(ecg, sample_rate_hz)
    assert "ventricular_tachycardia" not in raised
    assert "ventricular_flutter_fibrillation" not in raised
