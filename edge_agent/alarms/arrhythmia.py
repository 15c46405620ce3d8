"""Ventricular arrhythmia alarm conditions, with the PhysioNet 2015 definitions.

- Ventricular tachycardia: 5 or more ventricular beats in a row with a heart rate above
  100 bpm.
- Ventricular flutter or fibrillation: a fibrillatory, flutter or oscillatory waveform
  for at least 4 s. The 4 s windows of `edge_agent.dsp.fibrillation` report where the
  oscillation began, and the condition starts once windows have qualified without a
  break for 4 s from there.

Source: Clifford GD et al. The PhysioNet/Computing in Cardiology Challenge 2015:
Reducing false arrhythmia alarms in the ICU. Computing in Cardiology 42 (2015).
"""

import logging
from collections.abc import Sequence

from edge_agent.alarms.catalog import AlarmKind, AlarmPriority, AlarmState
from edge_agent.alarms.change import AlarmChange

logger = logging.getLogger(__name__)

# Fibrillation ends after this many consecutive windows without it (0.5 s at the
# detector's 0.25 s hop), so one odd window does not end the condition.
FIBRILLATION_CLEAR_WINDOWS = 2


class VentricularTachycardiaRule:
    """Condition of a run of fast ventricular beats.

    The rate of a beat is 60 s divided by the RR interval ending at it, and the run's
    rate is the mean of those rates. The condition ends at the first beat that is not
    ventricular.
    """

    kind = AlarmKind.VENTRICULAR_TACHYCARDIA

    def __init__(self, sample_rate_hz: float, rate_bpm: float = 100.0, beats: int = 5):
        if beats < 1 or not rate_bpm > 0:
            raise ValueError(f"beats={beats} and rate_bpm={rate_bpm} must be positive")
        self._fs = float(sample_rate_hz)
        self._rate_bpm = rate_bpm
        self._beats = beats
        self._last_beat: int | None = None
        self._run: list[float] = []  # rates of the current ventricular run
        self._active = False

    def update(self, beats: Sequence[tuple[int, bool]]) -> list[AlarmChange]:
        """Take (R-peak sample, ventricular) pairs in order and return changes."""
        changes: list[AlarmChange] = []
        for sample, ventricular in beats:
            rate = None
            if self._last_beat is not None and sample > self._last_beat:
                rate = 60.0 * self._fs / (sample - self._last_beat)
            self._last_beat = sample
            if not ventricular:
                self._run.clear()
                if self._active:
                    self._active = False
                    evidence = f"Non-ventricular beat at {sample / self._fs:.2f} s"
                    changes.append(self._change(AlarmState.CLEARED, sample, evidence))
                continue
            if rate is not None:
                self._run.append(rate)
            changes.extend(self._check_run(sample))
        return changes

    def _check_run(self, sample: int) -> list[AlarmChange]:
        if self._active or len(self._run) < self._beats:
            return []
        mean_bpm = sum(self._run) / len(self._run)
        if mean_bpm <= self._rate_bpm:
            return []
        self._active = True
        evidence = (
            f"{len(self._run)} ventricular beats in a row (QRS wider than 120 ms and "
            f"unlike the normal beats) at a mean {mean_bpm:.0f} bpm, above "
            f"{self._rate_bpm:g} bpm"
        )
        return [self._change(AlarmState.RAISED, sample, evidence)]

    def _change(self, state: str, sample: int, evidence: str) -> AlarmChange:
        return AlarmChange(self.kind, AlarmPriority.HIGH, state, sample, evidence)


class FibrillationRule:
    """Condition of ventricular flutter or fibrillation from 4 s spectral windows."""

    kind = AlarmKind.VENTRICULAR_FIBRILLATION

    def __init__(self, sample_rate_hz: float, duration_s: float = 4.0) -> None:
        self._fs = float(sample_rate_hz)
        self._duration_s = duration_s
        self._duration = round(duration_s * self._fs)
        self._active = False
        self._quiet_windows = 0
        self._onset: int | None = None  # where the current oscillation began

    def update(
        self, windows: Sequence[tuple[int, bool, float, int]]
    ) -> list[AlarmChange]:
        """Take (window end, fibrillation, dominant Hz, onset) and return changes."""
        changes: list[AlarmChange] = []
        for end_sample, fibrillation, dominant_hz, onset in windows:
            if fibrillation:
                self._quiet_windows = 0
                if self._onset is None:
                    self._onset = onset
                if not self._active and end_sample - self._onset >= self._duration:
                    self._active = True
                    evidence = (
                        f"Oscillation at {dominant_hz:.1f} Hz "
                        f"({60.0 * dominant_hz:.0f}/min) without QRS complexes for "
                        f"{(end_sample - self._onset) / self._fs:.1f} s since "
                        f"{self._onset / self._fs:.2f} s"
                    )
                    raised = self._change(AlarmState.RAISED, end_sample, evidence)
                    changes.append(raised)
                continue
            self._quiet_windows += 1
            if not self._active:
                self._onset = None  # the oscillation must last without a break
            elif self._quiet_windows >= FIBRILLATION_CLEAR_WINDOWS:
                self._active = False
                self._onset = None
                up_to_s = end_sample / self._fs
                evidence = f"No oscillation in the 4 s up to {up_to_s:.2f} s"
                changes.append(self._change(AlarmState.CLEARED, end_sample, evidence))
        return changes

    def _change(self, state: str, sample: int, evidence: str) -> AlarmChange:
        return AlarmChange(self.kind, AlarmPriority.HIGH, state, sample, evidence)
