"""Bedside alarms: rules for each alarm condition and the engine that runs them."""

from edge_agent.alarms.catalog import (
    DEFAULT_POLICIES,
    AlarmCategory,
    AlarmKind,
    AlarmPolicy,
    AlarmPriority,
    AlarmState,
)
from edge_agent.alarms.change import AlarmChange
from edge_agent.alarms.engine import AlarmEngine, AlarmRule, AlarmStatus
from edge_agent.alarms.limits import DEFAULT_LIMITS, NumericLimit
from edge_agent.alarms.rules import (
    AsystoleRule,
    ConsecutiveRateRule,
    physionet_2015_rules,
)

__all__ = [
    "DEFAULT_LIMITS",
    "DEFAULT_POLICIES",
    "AlarmCategory",
    "AlarmChange",
    "AlarmEngine",
    "AlarmKind",
    "AlarmPolicy",
    "AlarmPriority",
    "AlarmRule",
    "AlarmState",
    "AlarmStatus",
    "AsystoleRule",
    "ConsecutiveRateRule",
    "NumericLimit",
    "physionet_2015_rules",
]
