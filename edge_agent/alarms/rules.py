"""Life-threatening arrhythmia alarm rules, with the PhysioNet 2015 definitions.

- Asystole: no QRS for at least 4 s.
- Extreme bradycardia: heart rate below 40 bpm for 5 consecutive beats.
- Extreme tachycardia: heart rate above 140 bpm for 17 consecutive beats.

Source: Clifford GD et al. The PhysioNet/Computing in Cardiology Challenge 2015:
Reducing false arrhythmia alarms in the ICU. Computing in Cardiology 42 (2015).

The rate of a beat is 60 s divided by the RR interval that ends at it, so N
consecutive beats need N + 1 detected R peaks.
"""

import logging
from collections.abc import Sequence

from edge_agent.alarms.engine import (
    AlarmChange,
    AlarmKind,
    AlarmPriority,
    AlarmRule,
    AlarmState,
)

logger = logging.getLogger(__name__)

# Asystole clears on the second beat after the pause, so one noise spike during a
# standstill does not end the alarm.
ASYSTOLE_CLEAR_BEATS = 2

# A rate alarm clears after this many consecutive beats at least this far on the normal
# side of its limit, so a rate hovering at the limit does not make it chatter.
RATE_CLEAR_BEATS = 3
RATE_HYSTERESIS_BPM = 5.0

# Evidence lists every rate up to this many beats, and a summary for longer runs.
EVIDENCE_MAX_LISTED_RATES = 8


class AsystoleRule:
    """Asystole alarm, raised when no beat comes for `pause_s`, from start-up on."""

    kind = AlarmKind.ASYSTOLE

    def __init__(
        self,
        sample_rate_hz: float,
        pause_s: float = 4.0,
        priority: str = AlarmPriority.HIGH,
        start_sample: int = 0,
    ) -> None:
        if pause_s <= 0:
            raise ValueError(f"pause_s={pause_s} must be positive")
        self.priority = priority
        self._fs = float(sample_rate_hz)
        self._pause_s = pause_s
        self._pause = round(pause_s * sample_rate_hz)
        self._last_beat: int | None = None
        self._reference = start_sample  # last beat, or the start of monitoring
        self._active = False
        self._beats_since_raise = 0

    def update(self, beat_samples: Sequence[int], now_sample: int) -> list[AlarmChange]:
        """Check the pause before each new beat and up to `now_sample`."""
        changes: list[AlarmChange] = []
        for beat in beat_samples:
            if self._last_beat is not None and beat <= self._last_beat:
                continue
            if not self._active and beat - self._reference >= self._pause:
                changes.append(self._raise(beat - self._reference))
            if self._active:
                changes.extend(self._count_returning_beat(beat))
            self._reference = beat
            self._last_beat = beat
        if not self._active and now_sample - self._reference >= self._pause:
            changes.append(self._raise(now_sample - self._reference))
        return changes

    def _raise(self, pause_samples: int) -> AlarmChange:
        self._active = True
        self._beats_since_raise = 0
        if self._last_beat is None:
            since = "since monitoring started"
        else:
            since = "after the last beat"
        evidence = (
            f"No QRS complex for {pause_samples / self._fs:.1f} s {since} "
            f"(limit {self._pause_s:g} s)"
        )
        onset = self._reference + self._pause
        return AlarmChange(self.kind, self.priority, AlarmState.RAISED, onset, evidence)

    def _count_returning_beat(self, beat: int) -> list[AlarmChange]:
        self._beats_since_raise += 1
        if self._beats_since_raise < ASYSTOLE_CLEAR_BEATS:
            return []
        if beat - self._reference >= self._pause:
            return []
        self._active = False
        evidence = (
            f"QRS complexes returned: {self._beats_since_raise} beats, the latest at "
            f"{beat / self._fs:.2f} s"
        )
        return [
            AlarmChange(self.kind, self.priority, AlarmState.CLEARED, beat, evidence)
        ]


class ConsecutiveRateRule:
    """Rate alarm, raised when `beats` consecutive beats all have a rate beyond a limit.

    With `below=True` the rate must be under the limit (bradycardia), otherwise over it
    (tachycardia). It clears after `clear_beats` consecutive beats at least
    `hysteresis_bpm` on the normal side of the limit.
    """

    def __init__(
        self,
        kind: str,
        sample_rate_hz: float,
        limit_bpm: float,
        beats: int,
        below: bool,
        priority: str = AlarmPriority.HIGH,
        clear_beats: int = RATE_CLEAR_BEATS,
        hysteresis_bpm: float = RATE_HYSTERESIS_BPM,
    ) -> None:
        if limit_bpm <= 0:
            raise ValueError(f"limit_bpm={limit_bpm} must be positive")
        if beats < 1 or clear_beats < 1:
            raise ValueError(
                f"beats={beats} and clear_beats={clear_beats} must be at least 1"
            )
        self.kind = kind
        self.priority = priority
        self._fs = float(sample_rate_hz)
        self._limit_bpm = limit_bpm
        self._beats = beats
        self._below = below
        self._clear_beats = clear_beats
        self._hysteresis_bpm = hysteresis_bpm
        self._last_beat: int | None = None
        self._run: list[float] = []  # rates of the current run beyond the limit
        self._normal_run = 0  # consecutive beats past the clear limit
        self._active = False

    def update(self, beat_samples: Sequence[int], now_sample: int) -> list[AlarmChange]:
        """Rate the new beats one by one. `now_sample` is not needed."""
        changes: list[AlarmChange] = []
        for beat in beat_samples:
            if self._last_beat is not None and beat > self._last_beat:
                rate_bpm = 60.0 * self._fs / (beat - self._last_beat)
                change = self._rate_beat(beat, rate_bpm)
                if change is not None:
                    changes.append(change)
            self._last_beat = beat
        return changes

    def _beyond(self, rate_bpm: float, limit_bpm: float) -> bool:
        return rate_bpm < limit_bpm if self._below else rate_bpm > limit_bpm

    def _rate_beat(self, beat: int, rate_bpm: float) -> AlarmChange | None:
        if self._beyond(rate_bpm, self._limit_bpm):
            self._run.append(rate_bpm)
        else:
            self._run.clear()
        if not self._active:
            if len(self._run) < self._beats:
                return None
            self._active = True
            self._normal_run = 0
            return self._change(AlarmState.RAISED, beat, self._raise_evidence())

        clear_limit = self._limit_bpm + (
            self._hysteresis_bpm if self._below else -self._hysteresis_bpm
        )
        if self._beyond(rate_bpm, clear_limit):
            self._normal_run = 0
        else:
            self._normal_run += 1
        if self._normal_run < self._clear_beats:
            return None
        self._active = False
        self._run.clear()
        side = "at or above" if self._below else "at or below"
        evidence = (
            f"{self._normal_run} consecutive beats {side} {clear_limit:g} bpm, the "
            f"latest at {rate_bpm:.0f} bpm"
        )
        return self._change(AlarmState.CLEARED, beat, evidence)

    def _raise_evidence(self) -> str:
        run = self._run[-self._beats :]
        side = "below" if self._below else "above"
        if len(run) <= EVIDENCE_MAX_LISTED_RATES:
            figures = ", ".join(f"{rate:.0f}" for rate in run) + " bpm"
        else:
            figures = (
                f"mean {sum(run) / len(run):.0f} bpm, range {min(run):.0f}-"
                f"{max(run):.0f} bpm"
            )
        return (
            f"{len(run)} consecutive beats {side} {self._limit_bpm:g} bpm ({figures})"
        )

    def _change(self, state: str, beat: int, evidence: str) -> AlarmChange:
        return AlarmChange(self.kind, self.priority, state, beat, evidence)


def physionet_2015_rules(
    sample_rate_hz: float,
    asystole_s: float = 4.0,
    bradycardia_bpm: float = 40.0,
    bradycardia_beats: int = 5,
    tachycardia_bpm: float = 140.0,
    tachycardia_beats: int = 17,
) -> list[AlarmRule]:
    """Build the asystole, extreme bradycardia and extreme tachycardia rules."""
    return [
        AsystoleRule(sample_rate_hz, pause_s=asystole_s),
        ConsecutiveRateRule(
            AlarmKind.EXTREME_BRADYCARDIA,
            sample_rate_hz,
            limit_bpm=bradycardia_bpm,
            beats=bradycardia_beats,
            below=True,
        ),
        ConsecutiveRateRule(
            AlarmKind.EXTREME_TACHYCARDIA,
            sample_rate_hz,
            limit_bpm=tachycardia_bpm,
            beats=tachycardia_beats,
            below=False,
        ),
    ]
