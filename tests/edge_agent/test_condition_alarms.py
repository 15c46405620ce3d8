"""Alarms of a bed without a sensor board: technical conditions and numeric limits."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge_agent.alarms.limits import DEFAULT_LIMITS, NumericLimit
from edge_agent.condition_alarms import ConditionAlarms
from edge_agent.ecg_stream import Outgoing
from protocol.messages import Emergency

START = datetime(2026, 3, 1, 8, 0, tzinfo=UTC)


class FakeClocks:
    def __init__(self) -> None:
        self.seconds = 100.0

    def wall(self) -> datetime:
        return START + timedelta(seconds=self.seconds)

    def monotonic(self) -> float:
        return self.seconds


def emergencies(out: Outgoing) -> list[Emergency]:
    return [build(seq) for seq, (_, build) in enumerate(out.alarms)]


def make(limits: tuple[NumericLimit, ...] = DEFAULT_LIMITS) -> tuple[ConditionAlarms,
                                                                     FakeClocks]:
    clocks = FakeClocks()
    alarms = ConditionAlarms("bed-2-ble", limits, clocks.wall, clocks.monotonic)
    return alarms, clocks


def test_condition_raised_and_cleared_with_one_id() -> None:
    alarms, clocks = make()
    [raised] = emergencies(alarms.set_condition(
        "sensor_disconnected", True, "no data from Bluetooth sensor strap for 10 s"
    ))
    assert (raised.kind, raised.state) == ("sensor_disconnected", "raised")
    assert raised.category == "technical"
    assert raised.priority == "medium"
    assert raised.evidence.startswith("no data")
    assert alarms.alarm_id_of("sensor_disconnected") == raised.alarm_id
    clocks.seconds += 30
    [cleared] = emergencies(alarms.set_condition(
        "sensor_disconnected", False, "every Bluetooth sensor sends data again"
    ))
    assert cleared.state == "cleared"
    assert cleared.alarm_id == raised.alarm_id
    assert cleared.started_at == raised.started_at
    assert alarms.alarm_id_of("sensor_disconnected") is None


def test_repeated_condition_sends_nothing() -> None:
    alarms, _ = make()
    alarms.set_condition("link_lost", True, "no connection to central for 15 s")
    assert emergencies(alarms.set_condition("link_lost", True, "still")) == []


def test_limit_waits_for_its_delay() -> None:
    alarms, clocks = make()
    assert emergencies(alarms.update_numeric("spo2", 85.0)) == []
    clocks.seconds += 9.0
    assert emergencies(alarms.update_numeric("spo2", 86.0)) == []
    clocks.seconds += 1.5
    [raised] = emergencies(alarms.update_numeric("spo2", 86.0))
    assert (raised.kind, raised.state, raised.priority) == ("spo2_low", "raised",
                                                            "medium")
    clocks.seconds += 5.0
    [cleared] = emergencies(alarms.update_numeric("spo2", 97.0))
    assert cleared.state == "cleared"


def test_acknowledged_condition_stays_until_it_ends() -> None:
    alarms, _ = make()
    alarms.set_condition("sensor_disconnected", True, "away")
    assert emergencies(alarms.acknowledge("sensor_disconnected")) == []
    [cleared] = emergencies(alarms.set_condition("sensor_disconnected", False, "back"))
    assert cleared.state == "cleared"


def test_limit_alarm_raised_by_code() -> None:
    alarms, clocks = make()
    alarms.update_numeric("heart_rate", 150.0)
    clocks.seconds += 11.0
    alarms.update_numeric("heart_rate", 150.0)
    assert alarms.limit_alarm_raised("heart_rate")
    assert not alarms.limit_alarm_raised("spo2")
