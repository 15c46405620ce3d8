"""Alarm engine: turns alarm conditions into raised and cleared alarms.

Rules and inputs report when an alarm condition starts and ends. The engine applies
the IEC 60601-1-8 concepts on top:

- alarm condition delay: the condition must last `delay_s` before the alarm is raised;
- latching: a latching alarm (by default every high-priority one) stays raised after
  its condition ends, until someone acknowledges it;
- acknowledgement: it silences one alarm while its condition lasts, and clears a
  latched alarm whose condition has ended;
- audio pause: it silences the alarms present when it starts, for a given time. Any
  alarm raised later sounds at once, because a pause never covers a new condition.

The engine does no I/O apart from logging. Every method that changes alarm state
returns the alarm changes it caused, in onset order.
"""

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from edge_agent.alarms.catalog import (
    DEFAULT_POLICIES,
    AlarmCategory,
    AlarmKind,
    AlarmPolicy,
    AlarmPriority,
    AlarmState,
    limit_policy,
)
from edge_agent.alarms.change import AlarmChange
from edge_agent.alarms.limits import LimitRule, NumericLimit

logger = logging.getLogger(__name__)

__all__ = [
    "AlarmCategory",
    "AlarmChange",
    "AlarmEngine",
    "AlarmKind",
    "AlarmPriority",
    "AlarmRule",
    "AlarmState",
    "AlarmStatus",
]


class AlarmRule(Protocol):
    """One alarm condition, evaluated incrementally from beats."""

    kind: str

    def update(self, beat_samples: Sequence[int], now_sample: int) -> list[AlarmChange]:
        """Take new beats and the current sample index, and return condition changes.

        `now_sample` is the index before which every beat has been reported, so a
        rule may treat the stretch up to it as beat-free after the last beat.
        """
        ...


@dataclass(frozen=True)
class AlarmStatus:
    """State of one raised alarm, for the display and the audio signal."""

    kind: str
    priority: str
    category: str
    onset_sample: int
    evidence: str
    condition_present: bool  # False while a latched alarm waits for acknowledgement
    acknowledged: bool
    audible: bool  # neither acknowledged nor covered by an audio pause


@dataclass
class _Alarm:
    policy: AlarmPolicy
    condition: AlarmChange | None = None  # the start of the present condition
    raised: AlarmChange | None = None
    acknowledged: bool = False
    ended_evidence: str = ""  # why the condition of a latched alarm ended


class AlarmEngine:
    """Engine that runs the rules, applies alarm policies and tracks raised alarms."""

    def __init__(
        self,
        rules: Sequence[AlarmRule],
        sample_rate_hz: float | None = None,
        policies: Mapping[str, AlarmPolicy] | None = None,
        limits: Sequence[NumericLimit] = (),
    ) -> None:
        kinds = [rule.kind for rule in rules]
        if len(set(kinds)) != len(kinds):
            raise ValueError(f"each alarm kind needs exactly one rule, got {kinds}")
        if sample_rate_hz is not None and not sample_rate_hz > 0:
            raise ValueError(f"sample_rate_hz={sample_rate_hz} must be positive")
        self._rules = list(rules)
        self._fs = sample_rate_hz
        self._policies = dict(DEFAULT_POLICIES)
        self._limits: dict[str, LimitRule] = {}
        for limit in limits:
            rule = LimitRule(limit)
            self._limits[limit.code] = rule
            for kind in rule.kinds():
                self._policies[kind] = limit_policy(limit.delay_s)
        self._policies.update(policies or {})
        self._alarms: dict[str, _Alarm] = {}
        self._now = 0
        self._audio_paused_until = 0
        self._paused_kinds: set[str] = set()

    @property
    def active(self) -> dict[str, AlarmChange]:
        """Raise events of the alarms currently raised, by kind."""
        return {
            kind: alarm.raised
            for kind, alarm in self._alarms.items()
            if alarm.raised is not None
        }

    def update(self, beat_samples: Sequence[int], now_sample: int) -> list[AlarmChange]:
        """Run all rules on new beats and return the alarm changes."""
        conditions = self.evaluate_rules(beat_samples, now_sample)
        return self.apply_conditions(conditions, now_sample)

    def evaluate_rules(
        self, beat_samples: Sequence[int], now_sample: int
    ) -> list[AlarmChange]:
        """Run all rules on new beats and return their condition changes, unapplied.

        The caller may check the conditions against other signals and then pass them
        to `apply_conditions`.
        """
        conditions: list[AlarmChange] = []
        for rule in self._rules:
            conditions.extend(rule.update(beat_samples, now_sample))
        return conditions

    def apply_conditions(
        self, conditions: Sequence[AlarmChange], now_sample: int
    ) -> list[AlarmChange]:
        """Apply condition starts and ends from any source, then the condition delays.

        `now_sample` is the index up to which the conditions are known.
        """
        self._now = max(self._now, now_sample)
        changes: list[AlarmChange] = []
        for condition in sorted(conditions, key=lambda change: change.onset_sample):
            changes.extend(self._apply_condition(condition))
        for kind in list(self._alarms):
            changes.extend(self._raise_if_due(kind, now_sample))
        changes.sort(key=lambda change: change.onset_sample)
        return changes

    def set_condition(
        self, kind: str, present: bool, sample: int, evidence: str = ""
    ) -> list[AlarmChange]:
        """Set a condition that the caller detects, such as `link_lost`.

        Repeating the current state is allowed and changes nothing, apart from raising
        alarms whose condition delay has passed by `sample`.
        """
        alarm = self._alarms.get(kind)
        if (alarm is not None and alarm.condition is not None) == present:
            return self.apply_conditions([], sample)
        state = AlarmState.RAISED if present else AlarmState.CLEARED
        if not evidence:
            evidence = f"{kind} {'reported' if present else 'no longer reported'}"
        priority = self._policy(kind, AlarmPriority.MEDIUM).priority
        condition = AlarmChange(kind, priority, state, sample, evidence)
        return self.apply_conditions([condition], sample)

    def update_numeric(self, code: str, value: float, sample: int) -> list[AlarmChange]:
        """Check a vital-sign value (for example `spo2`) against its limits."""
        rule = self._limits.get(code)
        if rule is None:
            raise ValueError(
                f"no limits configured for {code!r}; configured: "
                f"{', '.join(sorted(self._limits)) or 'none'}"
            )
        return self.apply_conditions(rule.update(value, sample), sample)

    def acknowledge(self, kind: str) -> list[AlarmChange]:
        """Acknowledge a raised alarm. A latched alarm whose condition ended clears."""
        alarm = self._alarms.get(kind)
        if alarm is None or alarm.raised is None:
            logger.info("Acknowledged %s alarm, which is not raised", kind)
            return []
        alarm.acknowledged = True
        logger.info("Alarm acknowledged: %s", kind)
        if alarm.condition is not None:
            return []
        evidence = f"Acknowledged after its condition ended: {alarm.ended_evidence}"
        return [self._clear(kind, self._now, evidence)]

    def pause_audio(self, seconds: float) -> None:
        """Silence the alarms raised now for `seconds`. Later alarms still sound."""
        if not seconds > 0:
            raise ValueError(f"seconds={seconds} must be positive")
        self._audio_paused_until = self._now + self._samples(seconds, "audio pause")
        self._paused_kinds = set(self.active)
        logger.info("Audio paused for %g s: %s", seconds, sorted(self._paused_kinds))

    def status(self) -> list[AlarmStatus]:
        """Return the raised alarms, highest priority first, then oldest first."""
        order = {AlarmPriority.HIGH: 0, AlarmPriority.MEDIUM: 1, AlarmPriority.LOW: 2}
        statuses = [
            self._status(kind, alarm)
            for kind, alarm in self._alarms.items()
            if alarm.raised is not None
        ]
        statuses.sort(key=lambda s: (order.get(s.priority, 3), s.onset_sample))
        return statuses

    def _status(self, kind: str, alarm: _Alarm) -> AlarmStatus:
        assert alarm.raised is not None
        paused = kind in self._paused_kinds and self._now < self._audio_paused_until
        return AlarmStatus(
            kind=kind,
            priority=alarm.raised.priority,
            category=alarm.raised.category,
            onset_sample=alarm.raised.onset_sample,
            evidence=alarm.raised.evidence,
            condition_present=alarm.condition is not None,
            acknowledged=alarm.acknowledged,
            audible=not alarm.acknowledged and not paused,
        )

    def _policy(self, kind: str, fallback_priority: str) -> AlarmPolicy:
        policy = self._policies.get(kind)
        return policy if policy is not None else AlarmPolicy(fallback_priority)

    def _samples(self, seconds: float, purpose: str) -> int:
        if seconds == 0.0:
            return 0
        if self._fs is None:
            raise ValueError(f"sample_rate_hz is needed to convert the {purpose}")
        return round(seconds * self._fs)

    def _apply_condition(self, condition: AlarmChange) -> list[AlarmChange]:
        kind = condition.kind
        alarm = self._alarms.get(kind)
        if alarm is None:
            alarm = _Alarm(self._policy(kind, condition.priority))
            self._alarms[kind] = alarm
        # A condition that ends in this batch may have outlasted its delay first.
        changes = self._raise_if_due(kind, condition.onset_sample)
        if condition.state == AlarmState.RAISED:
            if alarm.raised is not None and alarm.condition is None:
                # A latched alarm whose condition had ended: this is a new episode,
                # and staff must hear it as one, acknowledged or not.
                changes.append(self._clear(
                    kind, condition.onset_sample,
                    "the condition began again; a new alarm follows",
                ))
            self._start_condition(alarm, condition)
        elif alarm.condition is None:
            logger.warning("Ignored end of %s condition that had not started", kind)
        else:
            changes.extend(self._end_condition(alarm, condition))
        return changes

    def _start_condition(self, alarm: _Alarm, condition: AlarmChange) -> None:
        if alarm.condition is not None:
            logger.warning("Ignored repeated start of %s condition", condition.kind)
            return
        alarm.condition = condition
        if alarm.raised is not None:
            # The condition of a latched alarm came back: a new condition, so any
            # acknowledgement or audio pause of the old one no longer applies.
            alarm.acknowledged = False
            self._paused_kinds.discard(condition.kind)

    def _end_condition(self, alarm: _Alarm, condition: AlarmChange) -> list[AlarmChange]:
        alarm.condition = None
        if alarm.raised is None:
            logger.info(
                "%s condition ended within its %g s delay",
                condition.kind,
                alarm.policy.delay_s,
            )
            return []
        if alarm.policy.latching and not alarm.acknowledged:
            alarm.ended_evidence = condition.evidence
            logger.info("Alarm latched: %s (%s)", condition.kind, condition.evidence)
            return []
        return [self._clear(condition.kind, condition.onset_sample, condition.evidence)]

    def _raise_if_due(self, kind: str, now_sample: int) -> list[AlarmChange]:
        alarm = self._alarms[kind]
        condition = alarm.condition
        if condition is None or alarm.raised is not None:
            return []
        delay = self._samples(alarm.policy.delay_s, f"delay of {kind}")
        if now_sample < condition.onset_sample + delay:
            return []
        evidence = condition.evidence
        if delay:
            evidence += f" (present for at least {alarm.policy.delay_s:g} s)"
        alarm.raised = AlarmChange(
            kind,
            alarm.policy.priority,
            AlarmState.RAISED,
            condition.onset_sample + delay,
            evidence,
            alarm.policy.category,
        )
        alarm.acknowledged = False
        self._paused_kinds.discard(kind)
        logger.info("Alarm raised: %s (%s)", kind, evidence)
        return [alarm.raised]

    def _clear(self, kind: str, sample: int, evidence: str) -> AlarmChange:
        alarm = self._alarms[kind]
        assert alarm.raised is not None
        cleared = AlarmChange(
            kind,
            alarm.raised.priority,
            AlarmState.CLEARED,
            sample,
            evidence,
            alarm.raised.category,
        )
        alarm.raised = None
        alarm.acknowledged = False
        self._paused_kinds.discard(kind)
        logger.info("Alarm cleared: %s (%s)", kind, evidence)
        return cleared
