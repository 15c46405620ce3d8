import csv
import json
from pathlib import Path

import pytest

from edge_agent.analyze import analyze_record, select_lead
from edge_agent.dsp.pipeline import AnalyzerSettings

RECORDINGS = Path(__file__).resolve().parents[2] / "firmware_sim" / "recordings"


def _rows(path: Path) -> list[list[str]]:
    with path.open(newline="") as file:
        return list(csv.reader(file))


def _alarms(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_a103l_lead_ii_raises_no_asystole(tmp_path: Path) -> None:
    # The bedside monitor's asystole alarm at 5:00 in a103l was judged false.
    summary = analyze_record(RECORDINGS / "a103l", "II", tmp_path)
    assert summary.lead == "II"
    assert summary.sample_rate_hz == 250.0
    assert summary.duration_s == pytest.approx(330.0)
    kinds = [alarm["kind"] for alarm in _alarms(summary.alarms_path)]
    assert "asystole" not in kinds
    # The rhythm stays between 120 and 130 bpm for most of the record, about 680 beats.
    assert 600 < summary.beat_count < 750


def test_a103l_default_lead_is_ii(tmp_path: Path) -> None:
    summary = analyze_record(RECORDINGS / "a103l", None, tmp_path)
    assert summary.lead == "II"
    assert summary.record_name == "a103l"


def test_analyze_writes_three_files(tmp_path: Path) -> None:
    out_dir = tmp_path / "out" / "100"
    summary = analyze_record(RECORDINGS / "100", None, out_dir, chunk_s=0.5)
    assert summary.lead == "MLII"
    assert summary.beats_path == out_dir / "beats.csv"

    beats = _rows(summary.beats_path)
    assert beats[0] == ["sample", "seconds"]
    assert len(beats) - 1 == summary.beat_count
    # Record 100 contains 2,273 annotated beats in 30 min 5 s.
    assert abs(summary.beat_count - 2273) <= 2
    sample, seconds = beats[1]
    assert float(seconds) == pytest.approx(int(sample) / 360.0, abs=0.001)

    rates = _rows(summary.heart_rate_path)
    assert rates[0] == ["seconds", "bpm"]
    assert len(rates) - 1 == summary.beat_count - 4
    assert all(50.0 < float(bpm) < 110.0 for _, bpm in rates[1:])

    assert summary.alarms_path.exists()
    assert _alarms(summary.alarms_path) == []
    assert summary.alarm_count == 0


def test_analyze_writes_alarm_lines(tmp_path: Path) -> None:
    # Record a103l runs at 120 to 130 bpm, so a 100 bpm limit gives an alarm to write.
    settings = AnalyzerSettings(tachycardia_bpm=100.0)
    summary = analyze_record(RECORDINGS / "a103l", "V", tmp_path, settings=settings)
    alarms = _alarms(summary.alarms_path)
    assert summary.alarm_count == len(alarms) >= 1
    first = alarms[0]
    assert set(first) == {
        "kind",
        "priority",
        "category",
        "state",
        "onset_seconds",
        "evidence",
    }
    assert first["category"] == "physiological"
    assert first["kind"] == "extreme_tachycardia"
    assert first["state"] == "raised"
    assert first["priority"] == "high"
    assert 0.0 < first["onset_seconds"] < 20.0


def test_analyze_unknown_lead_lists_names(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'aVR' not found.*II, V, PLETH"):
        analyze_record(RECORDINGS / "a103l", "aVR", tmp_path)


def test_analyze_rejects_non_voltage_lead(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="PLETH"):
        analyze_record(RECORDINGS / "a103l", "PLETH", tmp_path)


def test_analyze_accepts_header_path(tmp_path: Path) -> None:
    summary = analyze_record(str(RECORDINGS / "a103l.hea"), "II", tmp_path)
    assert summary.record_name == "a103l"


def test_select_lead_skips_non_ecg_signals() -> None:
    assert select_lead(["ABP", "PLETH", "RESP", "V", "II"], None) == 3
    assert select_lead(["PLETH", "ECG1"], None) == 1
    with pytest.raises(ValueError, match="no ECG lead"):
        select_lead(["ABP", "PLETH"], None)
