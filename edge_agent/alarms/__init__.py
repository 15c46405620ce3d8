"""Bedside alarms: rules for each alarm condition and the engine that runs them."""

from edge_agent.alarms.engine import (
    AlarmChange,
    AlarmEngine,
    AlarmKind,
    AlarmPriority,
    AlarmRule,
    AlarmState,
)
from edge_agent.alarms.rules import (
    AsystoleRule,
    ConsecutiveRateRule,
    physionet_2015_rules,
)

__all__ = [
    "AlarmChange",
    "AlarmEngine",
    "AlarmKind",
    "AlarmPriority",
    "AlarmRule",
    "AlarmState",
    "AsystoleRule",
    "ConsecutiveRateRule",
    "physionet_2015_rules",
]
