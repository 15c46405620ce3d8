"""Confirmation of ECG-only asystole and extreme bradycardia by a pulse signal.

An ECG whose electrodes come loose or whose QRS shrinks shows a pause that the heart
does not have. A plethysmogram (PLETH) or arterial pressure (ABP) keeps pulsing
through such a pause, so a second signal can tell the two apart:

- no pulse in the pause either: the alarm is raised and its evidence states that
  the pulse signal confirmed it;
- pulses at a plausible rate all through the pause: the alarm is withheld and an
  `ecg_unreliable` technical alarm is raised in its place. A withheld alarm is raised
  after all as soon as the pulses stop, or the pulse signal goes missing, while the
  ECG condition lasts;
- anything in between, or no usable pulse signal over the pause: the alarm is raised
  on the ECG alone, and its evidence says so.

Pulses lag the R wave by the pulse transit time, so the pulse that follows the last
QRS before a pause does not count against the pause.
"""

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from edge_agent.alarms.catalog import (
    AlarmCategory,
    AlarmKind,
    AlarmPriority,
    AlarmState,
)
from edge_agent.alarms.change import AlarmChange

logger = logging.getLogger(__name__)

# The systolic peak of a finger pulse typically comes 0.2 to 0.5 s after the R
# wave. Pulses
# within this long of the start of a pause belong to the beat before it.
MAX_PULSE_TRANSIT_S = 0.8
# Pulses contradict an asystole when at least this many fall in the pause and no
# pulse-free stretch in it lasts longer than the gap (2 s is 30/min).
MIN_CONTRADICTING_PULSES = 2
MAX_PULSE_GAP_S = 2.0
# Pulses contradict an extreme bradycardia when their rate is this far above the limit.
BRADYCARDIA_MARGIN_BPM = 5.0
# Pulses are kept this long, which covers the longest window looked at.
PULSE_MEMORY_S = 30.0

GATED_KINDS = (AlarmKind.ASYSTOLE, AlarmKind.EXTREME_BRADYCARDIA)


@dataclass(frozen=True)
class _Verdict:
    """Outcome of checking one ECG condition against the pulses."""

    rejected: bool  # the pulses contradict the ECG, so the alarm is withheld
    text: str  # the finding, for the evidence


class PulseConfirmation:
    """Gate between the ECG rhythm rules and the alarm engine.

    `review` takes the condition changes of the rules and returns those to apply now,
    including any held back earlier that the pulse signal has since decided. Feed the
    pulses with `add_pulses` before each `review`, or call `mark_absent` for stretches
    without the pulse signal.
    """

    def __init__(
        self,
        sample_rate_hz: float,
        source_name: str,
        asystole_s: float = 4.0,
        bradycardia_bpm: float = 40.0,
        bradycardia_beats: int = 5,
    ) -> None:
        self._fs = float(sample_rate_hz)
        self._source = source_name
        self._asystole = round(asystole_s * self._fs)
        self._bradycardia_bpm = bradycardia_bpm
        self._bradycardia_span = round(
            bradycardia_beats * 60.0 / bradycardia_bpm * self._fs
        )
        self._transit = round(MAX_PULSE_TRANSIT_S * self._fs)
        self._max_gap = round(MAX_PULSE_GAP_S * self._fs)
        self._pulses: list[int] = []
        self._horizon = 0
        self._usable_from: int | None = None  # None while the signal is absent
        self._pending: dict[str, list[AlarmChange]] = {k: [] for k in GATED_KINDS}
        # Withheld raise conditions with the reason, by kind.
        self._withheld: dict[str, tuple[AlarmChange, str]] = {}
        self._unreliable = False

    def add_pulses(self, pulses: Sequence[int], horizon: int, usable_from: int) -> None:
        """Add pulses decided up to `horizon` on a signal usable from `usable_from`."""
        self._pulses.extend(pulses)
        self._horizon = max(self._horizon, horizon)
        self._usable_from = usable_from
        oldest = self._horizon - round(PULSE_MEMORY_S * self._fs)
        self._pulses = [p for p in self._pulses if p >= oldest]

    def mark_absent(self) -> None:
        """Record that the pulse signal is missing from the latest chunk."""
        self._usable_from = None

    def review(self, conditions: Sequence[AlarmChange], now: int) -> list[AlarmChange]:
        """Return the conditions to apply now, in onset order."""
        output: list[AlarmChange] = []
        for condition in conditions:
            if condition.kind in self._pending:
                self._pending[condition.kind].append(condition)
            else:
                output.append(condition)
        for kind in GATED_KINDS:
            output.extend(self._drain(kind))
            output.extend(self._recheck_withheld(kind, now))
        output.extend(self._update_unreliable(now))
        output.sort(key=lambda change: change.onset_sample)
        return output

    def _drain(self, kind: str) -> list[AlarmChange]:
        output: list[AlarmChange] = []
        queue = self._pending[kind]
        while queue:
            head = queue[0]
            if head.state == AlarmState.CLEARED:
                if self._withheld.pop(kind, None) is None:
                    output.append(head)
                queue.pop(0)
                continue
            verdict = self._judge(head)
            if verdict is None:
                break  # the pulse signal has not reached the end of the window yet
            queue.pop(0)
            if verdict.rejected:
                logger.info("%s withheld: %s", kind, verdict.text)
                self._withheld[kind] = (head, verdict.text)
            else:
                output.append(
                    replace(head, evidence=f"{head.evidence}; {verdict.text}")
                )
        return output

    def _window(self, condition: AlarmChange) -> tuple[int, int]:
        end = condition.onset_sample
        if condition.kind == AlarmKind.ASYSTOLE:
            return end - self._asystole + self._transit, end
        return end - self._bradycardia_span + self._transit, end

    def _judge(self, condition: AlarmChange) -> _Verdict | None:
        begin, end = self._window(condition)
        if self._usable_from is None or self._usable_from > begin:
            return _Verdict(False, f"ECG only: no usable {self._source} signal")
        if self._horizon < end:
            return None
        pulses = [p for p in self._pulses if begin <= p < end]
        if condition.kind == AlarmKind.ASYSTOLE:
            return self._judge_asystole(pulses, begin, end)
        return self._judge_bradycardia(pulses, begin, end)

    def _judge_asystole(self, pulses: list[int], begin: int, end: int) -> _Verdict:
        span = f"from {begin / self._fs:.2f} s to {end / self._fs:.2f} s"
        if not pulses:
            return _Verdict(False, f"confirmed by {self._source}: no pulse {span}")
        gap = _longest_gap(pulses, begin, end)
        if len(pulses) >= MIN_CONTRADICTING_PULSES and gap <= self._max_gap:
            return _Verdict(
                True,
                f"ECG shows no QRS but {self._source} shows {len(pulses)} pulses at "
                f"{self._rate_bpm(pulses):.0f}/min {span}: check the ECG electrodes",
            )
        return _Verdict(
            False,
            f"ECG only: {self._source} shows {len(pulses)} pulses {span} with a "
            f"{gap / self._fs:.1f} s gap, no steady pulse",
        )

    def _judge_bradycardia(self, pulses: list[int], begin: int, end: int) -> _Verdict:
        span = f"from {begin / self._fs:.2f} s to {end / self._fs:.2f} s"
        rate = self._rate_bpm(pulses)
        if rate < self._bradycardia_bpm:
            return _Verdict(
                False, f"confirmed by {self._source}: pulse rate {rate:.0f}/min {span}"
            )
        gap = _longest_gap(pulses, begin, end)
        steady = gap <= 60.0 / self._bradycardia_bpm * self._fs
        if steady and rate >= self._bradycardia_bpm + BRADYCARDIA_MARGIN_BPM:
            return _Verdict(
                True,
                f"ECG shows extreme bradycardia but {self._source} shows pulses at "
                f"{rate:.0f}/min {span}: check the ECG electrodes",
            )
        return _Verdict(
            False, f"ECG only: {self._source} pulse rate {rate:.0f}/min {span} unclear"
        )

    def _rate_bpm(self, pulses: list[int]) -> float:
        if len(pulses) < 2 or pulses[-1] <= pulses[0]:
            return 0.0
        return 60.0 * self._fs * (len(pulses) - 1) / (pulses[-1] - pulses[0])

    def _recheck_withheld(self, kind: str, now: int) -> list[AlarmChange]:
        """Raise a withheld alarm once the pulses stop or the pulse signal goes."""
        if kind not in self._withheld:
            return []
        condition, _ = self._withheld[kind]
        if self._usable_from is None:
            text = f"ECG only: the {self._source} signal that contradicted it is gone"
            onset = now
        elif self._pulses_continue(kind):
            return []
        else:
            end = self._horizon
            text = (
                f"confirmed by {self._source}: pulses stopped or slowed by "
                f"{end / self._fs:.2f} s"
            )
            onset = max(condition.onset_sample, end)
        del self._withheld[kind]
        logger.info("%s raised after being withheld: %s", kind, text)
        evidence = f"{condition.evidence}; {text}"
        return [replace(condition, onset_sample=onset, evidence=evidence)]

    def _pulses_continue(self, kind: str) -> bool:
        """Return whether the latest pulses still contradict the condition `kind`."""
        if kind == AlarmKind.ASYSTOLE:
            recent = [p for p in self._pulses if p >= self._horizon - self._asystole]
            return bool(recent)
        begin = self._horizon - self._bradycardia_span
        recent = [p for p in self._pulses if p >= begin]
        return self._rate_bpm(recent) >= self._bradycardia_bpm

    def _update_unreliable(self, now: int) -> list[AlarmChange]:
        present = bool(self._withheld)
        if present == self._unreliable:
            return []
        self._unreliable = present
        if present:
            evidence = "; ".join(text for _, text in self._withheld.values())
            state = AlarmState.RAISED
        else:
            evidence = f"No ECG alarm contradicted by {self._source} any more"
            state = AlarmState.CLEARED
        return [
            AlarmChange(
                AlarmKind.ECG_UNRELIABLE,
                AlarmPriority.MEDIUM,
                state,
                now,
                evidence,
                AlarmCategory.TECHNICAL,
            )
        ]


def _longest_gap(pulses: list[int], begin: int, end: int) -> int:
    edges = [begin, *pulses, end]
    return max(b - a for a, b in zip(edges[:-1], edges[1:], strict=True))
