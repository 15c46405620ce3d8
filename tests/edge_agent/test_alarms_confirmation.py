from pathlib import Path

import numpy as np
import pytest

from edge_agent.alarms.change import AlarmChange
from edge_agent.analyze import analyze_record, select_pulse_signal
from edge_agent.dsp.pipeline import AnalyzerSettings, EcgAnalyzer
from edge_agent.dsp.synthetic import beat_times_at_rate, pleth_wave, synthetic_ecg

FS = 250.0
DURATION_S = 30.0
ECG_STOP_S = 10.0  # the ECG shows no QRS after this
RECORDINGS = Path(__file__).resolve().parents[2] / "firmware_sim" / "recordings"


def _run(
    ecg: np.ndarray, pleth: np.ndarray | None, chunk_s: float = 1.0
) -> list[tuple[float, AlarmChange]]:
    """Stream both signals and return each alarm change with its chunk's end (s)."""
    analyzer = EcgAnalyzer(FS, pulse_name="PLETH")
    chunk = round(chunk_s * FS)
    changes = []
    for begin in range(0, ecg.size, chunk):
        pulse = None if pleth is None else pleth[begin : begin + chunk]
        result = analyzer.process(ecg[begin : begin + chunk], pulse)
        changes += [((begin + chunk) / FS, change) for change in result.alarms]
    return changes


def _raised(changes: list[tuple[float, AlarmChange]], kind: str) -> list[AlarmChange]:
    return [c for _, c in changes if c.kind == kind and c.state == "raised"]


def _ecg_stops() -> tuple[np.ndarray, np.ndarray]:
    beats = beat_times_at_rate(75.0, DURATION_S)
    ecg = synthetic_ecg(beats[beats < ECG_STOP_S], DURATION_S, FS)
    return beats, ecg


def test_flat_pleth_confirms_asystole() -> None:
    beats, ecg = _ecg_stops()
    pleth = pleth_wave(beats[beats < ECG_STOP_S], DURATION_S, FS)
    changes = _run(ecg, pleth)
    asystole = _raised(changes, "asystole")
    assert len(asystole) == 1
    assert "confirmed by PLETH: no pulse" in asystole[0].evidence
    assert asystole[0].onset_sample / FS == pytest.approx(
        ECG_STOP_S - 0.7 + 4.0, abs=0.1
    )
    assert not _raised(changes, "ecg_unreliable")


def test_flat_pleth_confirmation_is_prompt() -> None:
    beats, ecg = _ecg_stops()
    pleth = pleth_wave(beats[beats < ECG_STOP_S], DURATION_S, FS)
    changes = _run(ecg, pleth, chunk_s=0.25)
    reported = [end for end, c in changes if c.kind == "asystole"]
    definition_s = beats[beats < ECG_STOP_S][-1] + 4.0
    assert reported[0] - definition_s <= 1.0


def test_pulsing_pleth_rejects_asystole() -> None:
    beats, ecg = _ecg_stops()
    changes = _run(ecg, pleth_wave(beats, DURATION_S, FS))
    assert not _raised(changes, "asystole")
    unreliable = _raised(changes, "ecg_unreliable")
    assert len(unreliable) == 1
    assert unreliable[0].category == "technical"
    assert "PLETH shows" in unreliable[0].evidence
    assert "check the ECG electrodes" in unreliable[0].evidence


def test_no_pleth_keeps_ecg_only_asystole() -> None:
    _, ecg = _ecg_stops()
    with_none = _run(ecg, None)
    asystole = _raised(with_none, "asystole")
    assert len(asystole) == 1
    assert "PLETH" not in asystole[0].evidence
    assert "confirmed" not in asystole[0].evidence
    assert not _raised(with_none, "ecg_unreliable")


def test_no_pleth_output_matches_plain_analyzer() -> None:
    _, ecg = _ecg_stops()
    plain = EcgAnalyzer(FS)
    expected = []
    for begin in range(0, ecg.size, 250):
        expected += plain.process(ecg[begin : begin + 250]).alarms
    assert [c for _, c in _run(ecg, None)] == expected


def test_asystole_raised_when_pulses_stop_later() -> None:
    beats, ecg = _ecg_stops()
    pleth = pleth_wave(beats[beats < 18.0], DURATION_S, FS)
    changes = _run(ecg, pleth)
    asystole = _raised(changes, "asystole")
    assert len(asystole) == 1
    assert "confirmed by PLETH" in asystole[0].evidence
    # The pulses stop at 17.6 s, so the pulse pause reaches 4 s after 21.6 s.
    assert 21.0 < asystole[0].onset_sample / FS < 23.5
    kinds = [(c.kind, c.state) for _, c in changes if c.kind == "ecg_unreliable"]
    assert kinds == [("ecg_unreliable", "raised"), ("ecg_unreliable", "cleared")]


def test_asystole_raised_when_pleth_goes_missing() -> None:
    beats, ecg = _ecg_stops()
    pleth = pleth_wave(beats, DURATION_S, FS)
    analyzer = EcgAnalyzer(FS, pulse_name="PLETH")
    raised = []
    for begin in range(0, ecg.size, 250):
        pulse = pleth[begin : begin + 250] if begin < 20 * FS else None
        result = analyzer.process(ecg[begin : begin + 250], pulse)
        raised += [c for c in result.alarms if c.state == "raised"]
    asystole = [c for c in raised if c.kind == "asystole"]
    assert len(asystole) == 1
    assert asystole[0].onset_sample / FS == pytest.approx(20.0, abs=1.0)
    assert "signal that contradicted it is gone" in asystole[0].evidence


def test_pleth_rejects_extreme_bradycardia() -> None:
    # The ECG shows every second beat of a 70 bpm rhythm: 35 bpm.
    beats = beat_times_at_rate(70.0, DURATION_S)
    ecg = synthetic_ecg(beats[::2], DURATION_S, FS)
    changes = _run(ecg, pleth_wave(beats, DURATION_S, FS))
    assert not _raised(changes, "extreme_bradycardia")
    assert len(_raised(changes, "ecg_unreliable")) == 1


def test_pleth_confirms_extreme_bradycardia() -> None:
    beats = beat_times_at_rate(35.0, DURATION_S)
    ecg = synthetic_ecg(beats, DURATION_S, FS)
    changes = _run(ecg, pleth_wave(beats, DURATION_S, FS))
    bradycardia = _raised(changes, "extreme_bradycardia")
    assert len(bradycardia) == 1
    assert "confirmed by PLETH: pulse rate 35/min" in bradycardia[0].evidence


def test_pleth_of_wrong_length_rejected() -> None:
    analyzer = EcgAnalyzer(FS)
    with pytest.raises(ValueError, match="pulse_signal"):
        analyzer.process(np.zeros(250), np.zeros(200))


def test_analyze_a103l_uses_pleth(tmp_path: Path) -> None:
    summary = analyze_record(RECORDINGS / "a103l", "II", tmp_path)
    assert summary.pulse_signal == "PLETH"
    assert "asystole" not in summary.alarms_path.read_text()


def test_select_pulse_signal_prefers_abp() -> None:
    assert select_pulse_signal(["II", "V", "PLETH"]) == 2
    assert select_pulse_signal(["II", "PLETH", "ABP"]) == 2
    assert select_pulse_signal(["MLII", "V5"]) is None


def test_settings_reach_confirmation() -> None:
    settings = AnalyzerSettings(asystole_s=3.0)
    beats, ecg = _ecg_stops()
    pleth = pleth_wave(beats[beats < ECG_STOP_S], DURATION_S, FS)
    analyzer = EcgAnalyzer(FS, settings, pulse_name="PLETH")
    raised = []
    for begin in range(0, ecg.size, 250):
        end = begin + 250
        raised += analyzer.process(ecg[begin:end], pleth[begin:end]).alarms
    asystole = [c for c in raised if c.kind == "asystole"]
    assert asystole[0].onset_sample / FS == pytest.approx(
        ECG_STOP_S - 0.7 + 3.0, abs=0.1
    )
    assert "confirmed by PLETH" in asystole[0].evidence
