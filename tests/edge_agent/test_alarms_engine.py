"""Alarm engine: delays, latching, acknowledgement, audio pause and limits."""

import pytest

from edge_agent.alarms import AlarmEngine, NumericLimit

FS = 250.0


def _engine(**kwargs) -> AlarmEngine:
    limits = (NumericLimit("spo2", 90.0, None, "%", hysteresis=2.0, delay_s=5.0),)
    return AlarmEngine([], FS, limits=limits, **kwargs)


def _states(changes) -> list[tuple[str, str]]:
    return [(change.kind, change.state) for change in changes]


def test_technical_condition_raises_and_clears() -> None:
    engine = _engine()
    raised = engine.set_condition("link_lost", True, 100, "no reply from central")
    assert _states(raised) == [("link_lost", "raised")]
    assert raised[0].category == "technical"
    assert raised[0].priority == "medium"
    assert engine.set_condition("link_lost", True, 200) == []
    assert _states(engine.set_condition("link_lost", False, 300)) == [
        ("link_lost", "cleared")
    ]


def test_condition_delay_holds_raise() -> None:
    engine = _engine()
    # leads_off has a 1 s condition delay.
    assert engine.set_condition("leads_off", True, 0) == []
    assert engine.set_condition("leads_off", True, 249) == []
    raised = engine.set_condition("leads_off", True, 250)
    assert _states(raised) == [("leads_off", "raised")]
    assert raised[0].onset_sample == 250


def test_condition_shorter_than_delay_raises_nothing() -> None:
    engine = _engine()
    engine.set_condition("leads_off", True, 0)
    assert engine.set_condition("leads_off", False, 200) == []
    assert engine.active == {}


def test_high_priority_latches_until_acknowledged() -> None:
    engine = _engine()
    engine.set_condition("asystole", True, 1000)
    assert engine.set_condition("asystole", False, 2000) == []
    assert set(engine.active) == {"asystole"}
    [status] = engine.status()
    assert not status.condition_present
    cleared = engine.acknowledge("asystole")
    assert _states(cleared) == [("asystole", "cleared")]
    assert "Acknowledged" in cleared[0].evidence
    assert engine.active == {}


def test_acknowledged_alarm_clears_when_condition_ends() -> None:
    engine = _engine()
    engine.set_condition("asystole", True, 1000)
    assert engine.acknowledge("asystole") == []
    assert not engine.status()[0].audible
    assert _states(engine.set_condition("asystole", False, 2000)) == [
        ("asystole", "cleared")
    ]


def test_acknowledge_never_hides_new_condition() -> None:
    engine = _engine()
    engine.set_condition("asystole", True, 1000)
    engine.set_condition("asystole", False, 1500)  # latched
    engine.acknowledge("asystole")
    raised = engine.set_condition("asystole", True, 3000)
    assert _states(raised) == [("asystole", "raised")]
    assert engine.status()[0].audible


def test_audio_pause_spares_new_alarms() -> None:
    engine = _engine()
    engine.set_condition("asystole", True, 1000)
    engine.pause_audio(60.0)
    engine.set_condition("link_lost", True, 1100)
    audible = {status.kind: status.audible for status in engine.status()}
    assert audible == {"asystole": False, "link_lost": True}


def test_audio_pause_ends() -> None:
    engine = _engine()
    engine.set_condition("asystole", True, 1000)
    engine.pause_audio(2.0)
    engine.set_condition("asystole", True, 1000 + round(2.0 * FS))
    assert engine.status()[0].audible


def test_limit_with_delay_and_hysteresis() -> None:
    engine = _engine()
    assert engine.update_numeric("spo2", 88.0, 0) == []
    raised = engine.update_numeric("spo2", 89.0, round(5.0 * FS))
    assert _states(raised) == [("spo2_low", "raised")]
    assert raised[0].priority == "medium"
    assert "for at least 5 s" in raised[0].evidence
    # Values at the limit and inside it by less than the hysteresis keep it raised.
    for sample, value in ((1300, 90.0), (1400, 91.5), (1500, 89.5)):
        assert engine.update_numeric("spo2", value, sample) == []
    assert _states(engine.update_numeric("spo2", 92.0, 1600)) == [
        ("spo2_low", "cleared")
    ]


def test_value_at_limit_raises_nothing() -> None:
    engine = _engine()
    for sample in range(0, 5000, 250):
        assert engine.update_numeric("spo2", 90.0, sample) == []


def test_unknown_numeric_code_rejected() -> None:
    with pytest.raises(ValueError, match="'etco2'.*spo2"):
        _engine().update_numeric("etco2", 35.0, 0)


def test_limit_rejects_inverted_bounds() -> None:
    with pytest.raises(ValueError, match="low=100"):
        NumericLimit("heart_rate", 100.0, 50.0, "bpm", hysteresis=5.0)


def test_new_episode_of_latched_alarm_raised_again() -> None:
    engine = _engine()
    engine.set_condition("asystole", True, 1000)
    engine.set_condition("asystole", False, 2000)  # latched, never acknowledged
    changes = engine.set_condition("asystole", True, 5000)
    assert _states(changes) == [("asystole", "cleared"), ("asystole", "raised")]
    assert changes[1].onset_sample == 5000
    assert "began again" in changes[0].evidence
