"""Ventricular flutter/fibrillation is raised after 4 s of it, not before."""

import numpy as np
import pytest

from edge_agent.alarms.arrhythmia import FibrillationRule
from edge_agent.dsp import AnalyzerSettings, EcgAnalyzer
from edge_agent.dsp.fibrillation import FibrillationDetector
from edge_agent.dsp.synthetic import beat_times_at_rate, fibrillation_ecg, synthetic_ecg

FS = 250.0
KIND = "ventricular_flutter_fibrillation"


def _first_raise(ecg: np.ndarray, chunk_s: float = 0.25) -> tuple[float, float]:
    """Return (time reported, onset time) of the first fibrillation raise."""
    analyzer = EcgAnalyzer(FS, AnalyzerSettings(limits=()))
    chunk = round(chunk_s * FS)
    for begin in range(0, ecg.size, chunk):
        for change in analyzer.process(ecg[begin : begin + chunk]).alarms:
            if change.kind == KIND and change.state == "raised":
                return (begin + chunk) / FS, change.onset_sample / FS
    raise AssertionError("fibrillation was not raised")


@pytest.mark.parametrize("pause_s", [0.3, 1.0, 1.5])
@pytest.mark.parametrize("dominant_hz", [3.5, 5.0, 7.0])
def test_fibrillation_not_raised_before_4_s(pause_s: float, dominant_hz: float) -> None:
    normal = beat_times_at_rate(75, 12.0)
    start_s = normal[-1] + pause_s  # a flat stretch, then the oscillation
    ecg = synthetic_ecg(normal, 30.0, FS)
    ecg += fibrillation_ecg(start_s, 30.0, 30.0, FS, dominant_hz)
    reported_s, onset_s = _first_raise(ecg)
    definition_s = start_s + 4.0
    assert onset_s >= definition_s - 1.0 / FS
    assert reported_s >= definition_s
    assert reported_s - definition_s <= 1.0


def test_fibrillation_rule_waits_for_duration_from_onset() -> None:
    rule = FibrillationRule(FS, duration_s=4.0)
    onset = 1000
    # Windows qualify from 3000 on, but the oscillation began at 1000 + 500.
    windows = [(end, True, 5.0, onset + 500) for end in range(3000, 3600, 62)]
    changes = rule.update(windows)
    assert [c.state for c in changes] == ["raised"]
    assert changes[0].onset_sample >= onset + 500 + 1000


def test_fibrillation_rule_restarts_after_break() -> None:
    rule = FibrillationRule(FS, duration_s=4.0)
    assert rule.update([(2000, True, 5.0, 1500)]) == []
    assert rule.update([(2062, False, 0.0, 2062)]) == []
    # The oscillation broke off, so 4 s count again from the new onset.
    assert rule.update([(2600, True, 5.0, 2100)]) == []
    raised = rule.update([(3100, True, 5.0, 2100)])
    assert [c.state for c in raised] == ["raised"]


def test_fibrillation_detector_skip_matches_analysis() -> None:
    ecg = fibrillation_ecg(6.0, 20.0, 20.0, FS)
    full = FibrillationDetector(FS).process(ecg)
    skipped = FibrillationDetector(FS).process(ecg, skip_until=round(5.0 * FS))
    assert [w.end_sample for w in skipped] == [w.end_sample for w in full]
    for plain, quick in zip(full, skipped, strict=True):
        if plain.end_sample - round(4.0 * FS) > round(5.0 * FS):
            assert quick == plain
        else:
            assert not quick.fibrillation


def test_fibrillation_onset_found_after_flat_stretch() -> None:
    ecg = fibrillation_ecg(2.0, 20.0, 20.0, FS)
    windows = FibrillationDetector(FS).process(ecg)
    first = next(w for w in windows if w.fibrillation)
    assert first.onset_sample / FS == pytest.approx(2.0, abs=0.25)
