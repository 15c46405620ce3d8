"""ECG analysis facade: QRS detection, heart rate, signal quality and alarms per chunk.

`EcgAnalyzer` is what the edge agent and the offline analysis both call. It does no I/O
and no asyncio: samples go in, and beats, rate, quality, technical conditions and alarm
changes come out. Inputs that the caller detects (link lost, buffer trouble, sensor
silent, other vital signs) go in through `set_condition` and `update_numeric`.
"""

import logging
from dataclasses import dataclass, field, replace

import numpy as np

from edge_agent.alarms.arrhythmia import FibrillationRule, VentricularTachycardiaRule
from edge_agent.alarms.catalog import DEFAULT_POLICIES, AlarmKind
from edge_agent.alarms.change import AlarmChange
from edge_agent.alarms.engine import AlarmEngine, AlarmStatus
from edge_agent.alarms.limits import HEART_RATE
from edge_agent.alarms.rules import physionet_2015_rules
from edge_agent.dsp.beats import QrsDetector
from edge_agent.dsp.fibrillation import FibrillationDetector
from edge_agent.dsp.heart_rate import HeartRateMeter
from edge_agent.dsp.morphology import BeatClassifier, BeatShape
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


class EcgAnalyzer:
    """Streaming analysis of one ECG lead sampled at 125 to 1000 Hz."""

    def __init__(
        self, sample_rate_hz: float, settings: AnalyzerSettings | None = None
    ) -> None:
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
        self._alarms = _build_engine(self._fs, self.settings)
        self._quality_window = round(QUALITY_WINDOW_S * self._fs)
        self._recent = np.zeros(0)
        self._last_normal_beat = -1

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

        Kinds the agent sets: `sensor_silent`, `buffer_trouble`, `link_lost` and
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

    def process(self, samples_mv: np.ndarray) -> ChunkAnalysis:
        """Analyse the next chunk of samples (mV). NaN and infinities count as gaps."""
        samples = np.asarray(samples_mv, dtype=np.float64)
        if samples.ndim != 1:
            raise ValueError(f"samples_mv must be one-dimensional, got {samples.shape}")
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
        alarms = self._alarms.update(beats, self._detector.beat_horizon)
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
        )

    def _fibrillation_conditions(
        self, filtered: np.ndarray, shapes: list[BeatShape]
    ) -> list[AlarmChange]:
        for shape in shapes:
            if shape.matches_template:
                self._last_normal_beat = shape.sample
        # Fibrillation has no identifiable QRS complexes, so a window that contains a
        # beat matching the normal template does not count, however its spectrum looks.
        window = self._fibrillation.window_samples
        verdicts = [
            (
                w.end_sample,
                w.fibrillation and w.end_sample - window > self._last_normal_beat,
                w.dominant_hz,
            )
            for w in self._fibrillation.process(filtered)
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


def _build_engine(sample_rate_hz: float, settings: AnalyzerSettings) -> AlarmEngine:
    policies = dict(DEFAULT_POLICIES)
    if not settings.latching:
        policies = {k: replace(p, latching=False) for k, p in policies.items()}
    rules = physionet_2015_rules(
        sample_rate_hz,
        asystole_s=settings.asystole_s,
        bradycardia_bpm=settings.bradycardia_bpm,
        bradycardia_beats=settings.bradycardia_beats,
        tachycardia_bpm=settings.tachycardia_bpm,
        tachycardia_beats=settings.tachycardia_beats,
    )
    return AlarmEngine(rules, sample_rate_hz, policies, settings.limits)
