"""ECG analysis facade: QRS detection, heart rate, signal quality and alarms per chunk.

`EcgAnalyzer` is what the edge agent and the offline analysis both call. It does no I/O
and no asyncio: samples go in, and beats, rate, quality and alarm changes come out.
"""

import logging
from dataclasses import dataclass, field

import numpy as np

from edge_agent.alarms.engine import AlarmChange, AlarmEngine
from edge_agent.alarms.rules import physionet_2015_rules
from edge_agent.dsp.beats import QrsDetector
from edge_agent.dsp.filters import validate_sample_rate
from edge_agent.dsp.heart_rate import HeartRateMeter
from edge_agent.dsp.quality import assess_signal_quality

logger = logging.getLogger(__name__)

__all__ = ["AlarmChange", "AnalyzerSettings", "ChunkAnalysis", "EcgAnalyzer"]

# Signal quality is rated on at least this much of the latest signal, so that short
# chunks still give a meaningful figure.
QUALITY_WINDOW_S = 2.0


@dataclass(frozen=True)
class AnalyzerSettings:
    """Analysis settings. The alarm defaults are the PhysioNet 2015 definitions."""

    mains_hz: float = 50.0
    asystole_s: float = 4.0
    bradycardia_bpm: float = 40.0
    bradycardia_beats: int = 5
    tachycardia_bpm: float = 140.0
    tachycardia_beats: int = 17


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


class EcgAnalyzer:
    """Streaming analysis of one ECG lead sampled at 125 to 1000 Hz."""

    def __init__(
        self, sample_rate_hz: float, settings: AnalyzerSettings | None = None
    ) -> None:
        self._fs = validate_sample_rate(sample_rate_hz)
        self.settings = settings or AnalyzerSettings()
        self._detector = QrsDetector(self._fs, self.settings.mains_hz)
        self._heart_rate = HeartRateMeter(self._fs)
        self._alarms = AlarmEngine(
            physionet_2015_rules(
                self._fs,
                asystole_s=self.settings.asystole_s,
                bradycardia_bpm=self.settings.bradycardia_bpm,
                bradycardia_beats=self.settings.bradycardia_beats,
                tachycardia_bpm=self.settings.tachycardia_bpm,
                tachycardia_beats=self.settings.tachycardia_beats,
            )
        )
        self._quality_window = round(QUALITY_WINDOW_S * self._fs)
        self._recent = np.zeros(0)

    @property
    def sample_rate_hz(self) -> float:
        """Sampling rate of the analysed lead (Hz)."""
        return self._fs

    @property
    def samples_seen(self) -> int:
        """Number of samples processed so far."""
        return self._detector.samples_seen

    @property
    def active_alarms(self) -> dict[str, AlarmChange]:
        """Raise events of the alarms currently active, by kind."""
        return self._alarms.active

    def process(self, samples_mv: np.ndarray) -> ChunkAnalysis:
        """Analyse the next chunk of samples (mV). NaN and infinities count as gaps."""
        samples = np.asarray(samples_mv, dtype=np.float64)
        if samples.ndim != 1:
            raise ValueError(f"samples_mv must be one-dimensional, got {samples.shape}")
        beats = self._detector.process(samples)
        beat_rates: list[float | None] = []
        for beat in beats:
            self._heart_rate.add_beat(beat)
            beat_rates.append(self._heart_rate.bpm)
        # NOTE: NaN gaps are held flat, so a gap longer than asystole_s raises asystole.
        # A technical alarm for missing data would describe it better.
        alarms = self._alarms.update(beats, self._detector.beat_horizon)
        window = max(self._quality_window, samples.size)
        self._recent = np.concatenate((self._recent, samples))[-window:]
        quality = assess_signal_quality(self._recent, self._fs)
        return ChunkAnalysis(
            beat_samples=beats,
            heart_rate_bpm=self._heart_rate.bpm_at(self.samples_seen),
            signal_quality=quality.index,
            alarms=alarms,
            leads_off=quality.flat,
            beat_heart_rates_bpm=beat_rates,
        )
