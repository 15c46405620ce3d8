"""ECG analysis facade: QRS detection, heart rate, signal quality and alarms per chunk.

`EcgAnalyzer` is what the edge agent and the offline analysis both call. It does no I/O
and no asyncio: samples go in, and beats, rate, quality, technical conditions and alarm
changes come out. Inputs that the caller detects (link lost, buffer trouble, sensor
silent, other vital signs) go in through `set_condition` and `update_numeric`. A pulse
signal (PLETH or ABP) sampled with the ECG may go in alongside it, to confirm or
reject asystole and extreme bradycardia (see `edge_agent.alarms.confirmation`).
"""

import logging
from dataclasses import dataclass, field

import numpy as np

from edge_agent.alarms.arrhythmia import FibrillationRule, VentricularTachycardiaRule
from edge_agent.alarms.catalog import AlarmKind
from edge_agent.alarms.change import AlarmChange
from edge_agent.alarms.confirmation import PulseConfirmation
from edge_agent.alarms.engine import AlarmStatus
from edge_agent.alarms.limits import HEART_RATE
from edge_agent.dsp.alarm_setup import build_confirmation, build_engine
from edge_agent.dsp.beats import QrsDetector
from edge_agent.dsp.fibrillation import FibrillationDetector
from edge_agent.dsp.heart_rate import HeartRateMeter
from edge_agent.dsp.morphology import BeatClassifier, BeatShape
from edge_agent.dsp.pulse import PulseDetector
from edge_agent.dsp.quality import assess_signal_quality
from edge_agent.dsp.settings import AnalyzerSettings
from edge_agent.dsp.technical import LEADS_OFF, NOISY, technical_conditions

logger = logging.getLogger(__name__)

__all__ = ["AlarmChange", "AnalyzerSettings", "ChunkAnalysis", "EcgAnalyzer"]

# Signal quality is rated on at least this much of the latest signal, so that short
# chunks still give a meaningful figure.
QUALITY_WINDOW_S = 2.0
# A measured sampling rate further than this from the nominal one (2 %) shifts every
# rate and interval by as much, so it is reported as a technical alarm.
MAX_SAMPLE_RATE_ERROR = 0.02
# A normal QRS-T complex ends about this long after its R peak (QT is 0.35 to 0.44 s at
# 60 to 100 bpm, and the R peak comes about 0.04 s into it). An oscillation that
# follows a normal beat starts no earlier.
NORMAL_COMPLEX_S = 0.35


@dataclass(frozen=True)
class ChunkAnalysis:
    """Result of analysing one chunk."""

    beat_samples: list[int]  # absolute R-peak indices confirmed in this call
    heart_rate_bpm: float | None  # None until enough beats, or after 4 s without one
    signal_quality: float  # 0..1 over the latest QUALITY_WINDOW_S, never NaN
    alarms: list[AlarmChange]  # raised or cleared during this call
    leads_off: bool = False  # flat line over the quality window
    # Heart rate right after each beat in `beat_samples`, None until enough beats.
    beat_heart_rates_bpm: list[float | None] = field(default_factory=list)
    # Technical conditions: names from `edge_agent.dsp.technical`.
    technical: frozenset[str] = frozenset()
    # Beats of `beat_samples` classified as ventricular.
    ventricular_beat_samples: list[int] = field(default_factory=list)
    # Samples replaced because they were part of a pacemaker pulse.
    pace_spike_samples: list[int] = field(default_factory=list)
    # Notch- and baseline-filtered ECG (mV) for display. It lags the input by a few
    # samples, see `EcgAnalyzer.display_delay_samples`.
    filtered_mv: np.ndarray = field(default_factory=lambda: np.zeros(0))
    # Systolic peaks of the pulse signal decided during this call, if one is fed.
    pulse_samples: list[int] = field(default_factory=list)


class EcgAnalyzer:
    """Streaming analysis of one ECG lead sampled at 125 to 1000 Hz."""

    def __init__(
        self,
        sample_rate_hz: float,
        settings: AnalyzerSettings | None = None,
        pulse_name: str = "pulse signal",
    ) -> None:
        """`pulse_name` names the pulse signal in evidence, for example "PLETH"."""
        self.settings = settings or AnalyzerSettings()
        self.settings.check(sample_rate_hz)
        self._fs = float(sample_rate_hz)
        self._detector = QrsDetector(self._fs, self.settings.mains_hz)
        self._heart_rate = HeartRateMeter(self._fs)
        self._classifier = BeatClassifier(self._fs, self._detector.filtered_window)
        self._fibrillation = FibrillationDetector(
            self._fs, self.settings.ventricular_fibrillation_s
        )
        self._vt_rule = VentricularTachycardiaRule(
            self._fs,
            self.settings.ventricular_tachycardia_bpm,
            self.settings.ventricular_tachycardia_beats,
        )
        self._vf_rule = FibrillationRule(
            self._fs, self.settings.ventricular_fibrillation_s
        )
        self._alarms = build_engine(self._fs, self.settings)
        self._quality_window = round(QUALITY_WINDOW_S * self._fs)
        self._recent = np.zeros(0)
        self._last_normal_beat = -1
        self._normal_complex = round(NORMAL_COMPLEX_S * self._fs)
        self._pulse_name = pulse_name
        # Created with the first chunk that comes with a pulse signal.
        self._pulse: PulseDetector | None = None
        self._confirmation: PulseConfirmation | None = None

    @property
    def sample_rate_hz(self) -> float:
        """Sampling rate of the analysed lead (Hz)."""
        return self._fs

    @property
    def samples_seen(self) -> int:
        """Number of samples processed so far."""
        return self._detector.samples_seen

    @property
    def display_delay_samples(self) -> int:
        """Number of samples by which `ChunkAnalysis.filtered_mv` lags the input."""
        return self._detector.samples_seen - self._detector.samples_filtered

    @property
    def active_alarms(self) -> dict[str, AlarmChange]:
        """Raise events of the alarms currently raised, by kind."""
        return self._alarms.active

    def alarm_status(self) -> list[AlarmStatus]:
        """Return the raised alarms with their acknowledgement and audio state."""
        return self._alarms.status()

    def acknowledge(self, kind: str) -> list[AlarmChange]:
        """Acknowledge an alarm. Returns the clear of a latched alarm, if any."""
        return self._alarms.acknowledge(kind)

    def pause_audio(self, seconds: float) -> None:
        """Silence the alarms raised now for `seconds`. New alarms still sound."""
        self._alarms.pause_audio(seconds)

    def set_condition(
        self, kind: str, present: bool, evidence: str = ""
    ) -> list[AlarmChange]:
        """Set a condition the caller detects, such as `link_lost`, at the latest sample.

        Kinds the agent sets: `sensor_silent`, `sensor_disconnected`,
        `sensor_battery_low`, `buffer_trouble`, `link_lost` and
        `sample_rate_mismatch` (see `AlarmKind`).
        """
        return self._alarms.set_condition(kind, present, self.samples_seen, evidence)

    def update_numeric(self, code: str, value: float) -> list[AlarmChange]:
        """Check another vital sign (`spo2`, `respiration_rate`, ...) against limits."""
        return self._alarms.update_numeric(code, value, self.samples_seen)

    def report_measured_sample_rate(self, measured_hz: float) -> list[AlarmChange]:
        """Compare the rate at which samples arrive with the nominal sampling rate."""
        error = abs(measured_hz - self._fs) / self._fs
        evidence = (
            f"Samples arrive at {measured_hz:.1f} Hz, nominal {self._fs:g} Hz "
            f"(limit {100 * MAX_SAMPLE_RATE_ERROR:g} %)"
        )
        present = not error <= MAX_SAMPLE_RATE_ERROR  # NaN counts as a mismatch
        return self.set_condition(AlarmKind.SAMPLE_RATE_MISMATCH, present, evidence)

    def process(
        self, samples_mv: np.ndarray, pulse_signal: np.ndarray | None = None
    ) -> ChunkAnalysis:
        """Analyse the next chunk of samples (mV). NaN and infinities count as gaps.

        `pulse_signal` contains as many samples of a PLETH or ABP signal, at the same
        rate and in any unit. A chunk without it counts as a gap in that signal.
        """
        samples = np.asarray(samples_mv, dtype=np.float64)
        if samples.ndim != 1:
            raise ValueError(f"samples_mv must be one-dimensional, got {samples.shape}")
        pulses = self._process_pulse(pulse_signal, samples.size)
        nonfinite_before = self._detector.nonfinite_count
        beats = self._detector.process(samples)
        filtered = self._detector.last_filtered_mv
        beat_rates: list[float | None] = []
        shapes: list[BeatShape] = []
        for beat in beats:
            self._heart_rate.add_beat(beat)
            beat_rates.append(self._heart_rate.bpm)
            shapes.append(self._classifier.classify(beat))
        heart_rate = self._heart_rate.bpm_at(self.samples_seen)

        window = max(self._quality_window, samples.size)
        self._recent = np.concatenate((self._recent, samples))[-window:]
        quality = assess_signal_quality(self._recent, self._fs)
        technical = technical_conditions(
            quality,
            self._detector.nonfinite_count - nonfinite_before,
            self.settings.noisy_quality_index,
        )

        # NOTE: NaN gaps are held flat, so a gap longer than asystole_s raises asystole
        # as well as the leads-off alarm.
        now = self.samples_seen
        conditions = self._vt_rule.update([(s.sample, s.ventricular) for s in shapes])
        conditions += self._fibrillation_conditions(filtered, shapes)
        horizon = self._detector.beat_horizon
        rhythm = self._alarms.evaluate_rules(beats, horizon)
        if self._confirmation is not None:
            rhythm = self._confirmation.review(rhythm, horizon)
        alarms = self._alarms.apply_conditions(rhythm, horizon)
        alarms += self._alarms.apply_conditions(conditions, now)
        alarms += self._update_technical(technical, now)
        if heart_rate is not None and self.settings.heart_rate_limit() is not None:
            alarms += self._alarms.update_numeric(HEART_RATE, heart_rate, now)
        alarms.sort(key=lambda change: change.onset_sample)
        return ChunkAnalysis(
            beat_samples=beats,
            heart_rate_bpm=heart_rate,
            signal_quality=quality.index,
            alarms=alarms,
            leads_off=quality.flat,
            beat_heart_rates_bpm=beat_rates,
            technical=technical,
            ventricular_beat_samples=[s.sample for s in shapes if s.ventricular],
            pace_spike_samples=list(self._detector.last_pace_spike_samples),
            filtered_mv=filtered,
            pulse_samples=pulses,
        )

    def _process_pulse(self, pulse_signal: np.ndarray | None, size: int) -> list[int]:
        if pulse_signal is None:
            if self._pulse is None or self._confirmation is None:
                return []
            self._confirmation.mark_absent()
            return self._pulse.mark_gap(size)
        pulse = np.asarray(pulse_signal, dtype=np.float64)
        if pulse.shape != (size,):
            raise ValueError(
                f"pulse_signal must have the ECG chunk's shape ({size},), "
                f"got {pulse.shape}"
            )
        if self._pulse is None or self._confirmation is None:
            self._pulse = PulseDetector(self._fs, start_sample=self.samples_seen)
            self._confirmation = build_confirmation(
                self._fs, self.settings, self._pulse_name
            )
            logger.info(
                "Pulse signal %s joined at sample %d",
                self._pulse_name,
                self.samples_seen,
            )
        found = self._pulse.process(pulse)
        self._confirmation.add_pulses(
            found, self._pulse.horizon, self._pulse.usable_from
        )
        return found

    def _fibrillation_conditions(
        self, filtered: np.ndarray, shapes: list[BeatShape]
    ) -> list[AlarmChange]:
        for shape in shapes:
            if shape.matches_template:
                self._last_normal_beat = shape.sample
        # Fibrillation has no identifiable QRS complexes, so a window that contains a
        # beat matching the normal template does not count, however its spectrum looks.
        # Those windows need no spectrum, which saves most of the work in sinus rhythm.
        windows = self._fibrillation.process(filtered, self._last_normal_beat)
        # The last normal complex, T wave included, ends about this long after its R.
        complex_end = self._last_normal_beat + self._normal_complex
        verdicts = [
            (
                w.end_sample,
                w.fibrillation,
                w.dominant_hz,
                max(w.onset_sample, complex_end),
            )
            for w in windows
        ]
        return self._vf_rule.update(verdicts)

    def _update_technical(self, technical: frozenset[str], now: int) -> list[AlarmChange]:
        changes = self._alarms.set_condition(
            AlarmKind.LEADS_OFF,
            LEADS_OFF in technical,
            now,
            "ECG flat or at the amplifier rails over the last "
            f"{QUALITY_WINDOW_S:g} s: check the electrodes",
        )
        changes += self._alarms.set_condition(
            AlarmKind.SIGNAL_NOISY,
            NOISY in technical,
            now,
            f"ECG signal quality below {self.settings.noisy_quality_index:g}: "
            "check the electrodes and the patient's movement",
        )
        return changes

