from pathlib import Path

import numpy as np
import pytest

# wfdb comes through the module that silences its pandas warning on import.
from firmware_sim.sources import WfdbReplay, wfdb

RECORDINGS = Path(__file__).resolve().parents[2] / "firmware_sim" / "recordings"
RECORD_100 = RECORDINGS / "100"
RECORD_A103L = RECORDINGS / "a103l"


def expected_counts(record_path: Path, channel: int) -> np.ndarray:
    record = wfdb.rdrecord(str(record_path), physical=False)
    return record.d_signal[:, channel] - record.baseline[channel]


def test_replay_record_100_defaults_to_mlii():
    replay = WfdbReplay(RECORD_100)
    assert replay.lead == "MLII"
    assert replay.sample_rate_hz == 360.0
    assert replay.microvolts_per_count == pytest.approx(5.0)
    assert replay.signal_names == ["MLII", "V5"]


def test_replay_record_100_counts_match_wfdb():
    replay = WfdbReplay(RECORD_100)
    block = replay.read(3600)
    assert block.dtype == np.int16
    np.testing.assert_array_equal(block, expected_counts(RECORD_100, 0)[:3600])
    assert replay.position == 3600


def test_replay_selects_lead_by_name():
    replay = WfdbReplay(RECORD_100, lead="V5")
    assert replay.lead == "V5"
    np.testing.assert_array_equal(
        replay.read(500), expected_counts(RECORD_100, 1)[:500]
    )


def test_replay_mat_record():
    replay = WfdbReplay(RECORD_A103L)
    assert replay.lead == "II"
    assert replay.sample_rate_hz == 250.0
    assert replay.microvolts_per_count == pytest.approx(1000 / 7247)
    np.testing.assert_array_equal(
        replay.read(2500), expected_counts(RECORD_A103L, 0)[:2500]
    )
    assert replay.clipped_samples == 0
    assert replay.invalid_samples == 0


def test_replay_accepts_header_suffix():
    replay = WfdbReplay(RECORD_A103L.with_suffix(".hea"), lead="V")
    assert replay.lead == "V"


def test_replay_unknown_lead_lists_available():
    with pytest.raises(ValueError, match="MLII, V5"):
        WfdbReplay(RECORD_100, lead="aVF")


def test_replay_rejects_non_voltage_signal():
    with pytest.raises(ValueError, match="unit 'NU'"):
        WfdbReplay(RECORD_A103L, lead="PLETH")


def test_replay_missing_record():
    with pytest.raises(FileNotFoundError):
        WfdbReplay(RECORDINGS / "no-such-record")


def test_replay_loops_at_end():
    replay = WfdbReplay(RECORD_A103L)
    length = len(replay.samples)
    replay.read(length - 10)
    block = replay.read(30)
    expected = expected_counts(RECORD_A103L, 0)
    np.testing.assert_array_equal(block[:10], expected[-10:])
    np.testing.assert_array_equal(block[10:], expected[:20])
    assert replay.position == length + 20
    assert not replay.exhausted


def test_replay_without_loop_ends():
    replay = WfdbReplay(RECORD_A103L, loop=False)
    length = len(replay.samples)
    replay.read(length - 10)
    assert len(replay.read(30)) == 10
    assert replay.exhausted
    assert len(replay.read(30)) == 0
    assert replay.position == length
