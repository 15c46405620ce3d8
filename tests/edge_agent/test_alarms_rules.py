from dataclasses import replace

import numpy as np
import pytest

from edge_agent.alarms import (
    DEFAULT_POLICIES,
    AlarmChange,
    AlarmEngine,
    AlarmKind,
    AlarmState,
    AsystoleRule,
    physionet_2015_rules,
)

FS = 250.0


def _samples(times_s) -> list[int]:
    return [round(t * FS) for t in times_s]


def _engine() -> AlarmEngine:
    # These tests follow each rule's own condition, so nothing latches.
    unlatched = {
        kind: replace(policy, latching=False)
        for kind, policy in DEFAULT_POLICIES.items()
    }
    return AlarmEngine(physionet_2015_rules(FS), FS, policies=unlatched)


def _feed_beats(engine: AlarmEngine, beat_times_s, step_s: float = 1.0):
    """Feed beats in steps of `step_s`, with `now` at the end of each step."""
    beat_times_s = np.asarray(beat_times_s)
    end_s = float(beat_times_s[-1]) + step_s if beat_times_s.size else step_s
    changes: list[tuple[float, AlarmChange]] = []
    for step_end in np.arange(step_s, end_s + step_s, step_s):
        in_step = beat_times_s[
            (beat_times_s >= step_end - step_s) & (beat_times_s < step_end)
        ]
        for change in engine.update(_samples(in_step), round(step_end * FS)):
            changes.append((float(step_end), change))
    return changes


def _kinds(changes) -> list[tuple[str, str]]:
    return [(change.kind, change.state) for _, change in changes]


def test_normal_rhythm_raises_nothing() -> None:
    changes = _feed_beats(_engine(), np.arange(0.5, 120.0, 0.8))
    assert changes == []


def test_asystole_from_start_without_beats() -> None:
    engine = _engine()
    assert engine.update([], round(3.9 * FS)) == []
    changes = engine.update([], round(4.2 * FS))
    assert [(c.kind, c.state, c.priority) for c in changes] == [
        ("asystole", "raised", "high")
    ]
    assert changes[0].onset_sample == round(4.0 * FS)
    assert "monitoring started" in changes[0].evidence


def test_asystole_raised_once_while_active() -> None:
    engine = _engine()
    engine.update(_samples([0.5, 1.3]), round(2.0 * FS))
    raised = engine.update([], round(6.0 * FS))
    assert len(raised) == 1
    for second in range(7, 30):
        assert engine.update([], round(second * FS)) == []
    assert set(engine.active) == {"asystole"}


def test_asystole_evidence_names_the_pause() -> None:
    engine = _engine()
    engine.update(_samples([0.5, 1.3, 2.1]), round(2.5 * FS))
    [change] = engine.update([], round(6.6 * FS))
    assert change.onset_sample == round(6.1 * FS)
    assert "4.5 s" in change.evidence
    assert "after the last beat" in change.evidence


def test_asystole_clears_on_second_returning_beat() -> None:
    engine = _engine()
    engine.update(_samples([0.5, 1.3]), round(2.0 * FS))
    engine.update([], round(8.0 * FS))
    assert engine.update(_samples([9.0]), round(9.5 * FS)) == []
    [cleared] = engine.update(_samples([9.8]), round(10.5 * FS))
    assert cleared.state == AlarmState.CLEARED
    assert cleared.onset_sample == round(9.8 * FS)
    assert engine.active == {}


def test_pause_inside_update_raises_then_clears() -> None:
    engine = _engine()
    engine.update(_samples([0.5, 1.3, 2.1]), round(2.5 * FS))
    # The pause from 2.1 s to 6.6 s is only known once the beat at 6.6 s arrives.
    changes = engine.update(_samples([6.6, 7.4]), round(7.6 * FS))
    assert [(c.kind, c.state) for c in changes] == [
        ("asystole", "raised"),
        ("asystole", "cleared"),
    ]
    assert changes[0].onset_sample == round(6.1 * FS)


def test_pause_just_under_limit_raises_nothing() -> None:
    beats = [0.5, 1.3, 2.1, 6.0, 6.8, 7.6]
    assert _feed_beats(_engine(), beats, step_s=0.25) == []


def test_extreme_bradycardia_after_five_slow_beats() -> None:
    beat_times = np.arange(0.5, 40.0, 60.0 / 35.0)
    changes = _feed_beats(_engine(), beat_times)
    assert _kinds(changes) == [("extreme_bradycardia", "raised")]
    change = changes[0][1]
    # Five beats below 40 bpm need six R peaks, so the sixth beat meets the definition.
    assert change.onset_sample == round(beat_times[5] * FS)
    assert change.evidence.startswith("5 consecutive beats below 40 bpm (35, 35")


def test_extreme_tachycardia_after_seventeen_fast_beats() -> None:
    beat_times = np.arange(0.5, 20.0, 60.0 / 160.0)
    changes = _feed_beats(_engine(), beat_times)
    assert _kinds(changes) == [("extreme_tachycardia", "raised")]
    assert changes[0][1].onset_sample == round(beat_times[17] * FS)
    assert "17 consecutive beats above 140 bpm" in changes[0][1].evidence


def test_sixteen_fast_beats_raise_nothing() -> None:
    fast = 0.5 + np.arange(17) * 60.0 / 160.0  # 17 peaks, so 16 fast beats
    normal = fast[-1] + np.arange(1, 20) * 0.8
    assert _feed_beats(_engine(), np.concatenate((fast, normal))) == []


def test_tachycardia_clears_with_hysteresis() -> None:
    fast = 0.5 + np.arange(25) * 60.0 / 160.0
    # 137 bpm is back under the 140 bpm limit but inside the 5 bpm hysteresis band.
    hovering = fast[-1] + np.arange(1, 10) * 60.0 / 137.0
    normal = hovering[-1] + np.arange(1, 10) * 0.8
    changes = _feed_beats(_engine(), np.concatenate((fast, hovering, normal)))
    assert _kinds(changes) == [
        ("extreme_tachycardia", "raised"),
        ("extreme_tachycardia", "cleared"),
    ]
    # The third beat at 75 bpm clears it.
    assert changes[1][1].onset_sample == round(normal[2] * FS)


def test_bradycardia_at_limit_no_chatter() -> None:
    rates = [35.0] * 8 + [41.0, 39.0] * 10
    beat_times = 0.5 + np.concatenate(([0.0], np.cumsum(60.0 / np.array(rates))))
    changes = _feed_beats(_engine(), beat_times)
    assert _kinds(changes) == [("extreme_bradycardia", "raised")]


def test_bradycardia_clears_after_normal_beats() -> None:
    slow = 0.5 + np.arange(8) * 60.0 / 35.0
    normal = slow[-1] + np.arange(1, 10) * 0.8
    changes = _feed_beats(_engine(), np.concatenate((slow, normal)))
    assert _kinds(changes) == [
        ("extreme_bradycardia", "raised"),
        ("extreme_bradycardia", "cleared"),
    ]


def test_custom_limits() -> None:
    rules = physionet_2015_rules(FS, tachycardia_bpm=100.0, tachycardia_beats=3)
    beat_times = 0.5 + np.arange(6) * 60.0 / 110.0
    changes = _feed_beats(AlarmEngine(rules), beat_times)
    assert _kinds(changes) == [("extreme_tachycardia", "raised")]


def test_engine_rejects_duplicate_kinds() -> None:
    with pytest.raises(ValueError, match="asystole"):
        AlarmEngine([AsystoleRule(FS), AsystoleRule(FS)])


def test_engine_drops_duplicate_raise() -> None:
    class RepeatingRule:
        kind = AlarmKind.ASYSTOLE

        def update(self, beat_samples, now_sample):
            return [AlarmChange(self.kind, "high", AlarmState.RAISED, now_sample, "x")]

    engine = AlarmEngine([RepeatingRule()])
    assert len(engine.update([], 10)) == 1
    assert engine.update([], 20) == []
