"""Alarm engine: runs the alarm rules on each batch of beats and tracks active alarms.

The engine does no I/O apart from logging: it is fed R-peak sample indices and the
current sample index, and returns alarm changes. Each rule decides when its condition
starts and ends. The engine keeps one state per alarm kind, so an alarm is raised once
while it stays active and cleared only if it was raised. Latching and acknowledgement
belong here when they come.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

logger = logging.getLogger(__name__)


class AlarmKind(StrEnum):
    ASYSTOLE = "asystole"
    EXTREME_BRADYCARDIA = "extreme_bradycardia"
    EXTREME_TACHYCARDIA = "extreme_tachycardia"


class AlarmPriority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class AlarmState(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


@dataclass(frozen=True)
class AlarmChange:
    """An alarm being raised or cleared."""

    kind: str  # an AlarmKind value
    priority: str  # an AlarmPriority value
    state: str  # an AlarmState value
    # Absolute sample index where the raise or clear condition was met.
    onset_sample: int
    evidence: str  # why, with the figures, for the clinician and the event log


class AlarmRule(Protocol):
    """One alarm condition, evaluated incrementally."""

    kind: str

    def update(self, beat_samples: Sequence[int], now_sample: int) -> list[AlarmChange]:
        """Take new beats and the current sample index, and return any changes.

        `now_sample` is the index before which every beat has been reported, so a
        rule may treat the stretch up to it as beat-free after the last beat.
        """
        ...


class AlarmEngine:
    """Engine that runs every rule on each update and keeps the set of active alarms."""

    def __init__(self, rules: Sequence[AlarmRule]) -> None:
        kinds = [rule.kind for rule in rules]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"each alarm kind needs exactly one rule, got {kinds}")
        self._rules = list(rules)
        self._active: dict[str, AlarmChange] = {}

    @property
    def active(self) -> dict[str, AlarmChange]:
        """Raise events of the alarms currently active, by kind."""
        return dict(self._active)

    def update(self, beat_samples: Sequence[int], now_sample: int) -> list[AlarmChange]:
        """Run all rules and return the raises and clears, in onset order."""
        changes: list[AlarmChange] = []
        for rule in self._rules:
            for change in rule.update(beat_samples, now_sample):
                if self._apply(change):
                    changes.append(change)
        changes.sort(key=lambda change: change.onset_sample)
        return changes

    def _apply(self, change: AlarmChange) -> bool:
        active = change.kind in self._active
        if change.state == AlarmState.RAISED and not active:
            self._active[change.kind] = change
            logger.info("Alarm raised: %s (%s)", change.kind, change.evidence)
            return True
        if change.state == AlarmState.CLEARED and active:
            del self._active[change.kind]
            logger.info("Alarm cleared: %s (%s)", change.kind, change.evidence)
            return True
        logger.warning(
            "Ignored %s change for %s alarm that is %s",
            change.state,
            change.kind,
            "active" if active else "inactive",
        )
        return False
