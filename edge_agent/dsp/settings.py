"""Analysis and alarm settings, checked on construction and against a sampling rate."""

import logging
import math
from dataclasses import dataclass

from edge_agent.alarms.limits import DEFAULT_LIMITS, HEART_RATE, NumericLimit
from edge_agent.dsp.filters import (
    design_baseline_highpass,
    design_mains_notch,
    design_qrs_bandpass,
    validate_sample_rate,
)

logger = logging.getLogger(__name__)

# Mains frequencies in use worldwide (Hz).
MAINS_FREQUENCIES_HZ = (50.0, 60.0)

# A signal quality index below this counts as too noisy to analyse. With the limits in
# `quality.py`, 0.3 corresponds to a noise ratio of about 0.38, close to a 1 mV ECG
# with 0.2 mV RMS of white noise at 360 Hz.
NOISY_QUALITY_INDEX = 0.3


@dataclass(frozen=True)
class AnalyzerSettings:
    """Analysis settings. The arrhythmia defaults are the PhysioNet 2015 definitions.

    Construction checks what does not depend on the sampling rate. `check` checks the
    rest, and `EcgAnalyzer` calls it, so a configuration can be rejected at load time.
    """

    mains_hz: float = 50.0
    asystole_s: float = 4.0
    bradycardia_bpm: float = 40.0
    bradycardia_beats: int = 5
    tachycardia_bpm: float = 140.0
    tachycardia_beats: int = 17
    # Ventricular tachycardia: this many ventricular beats in a row above this rate.
    ventricular_tachycardia_bpm: float = 100.0
    ventricular_tachycardia_beats: int = 5
    # Ventricular flutter or fibrillation must last this long (s).
    ventricular_fibrillation_s: float = 4.0
    # High-priority alarms stay raised until acknowledged (IEC 60601-1-8 latching).
    latching: bool = True
    noisy_quality_index: float = NOISY_QUALITY_INDEX
    # Vital-sign limits and their delays. The heart-rate entry is checked against the
    # ECG heart rate, the others against values passed to `update_numeric`.
    limits: tuple[NumericLimit, ...] = DEFAULT_LIMITS

    def __post_init__(self) -> None:
        if self.mains_hz not in MAINS_FREQUENCIES_HZ:
            raise ValueError(f"mains_hz={self.mains_hz} must be 50 or 60")
        for name in (
            "asystole_s",
            "bradycardia_bpm",
            "tachycardia_bpm",
            "ventricular_tachycardia_bpm",
            "ventricular_fibrillation_s",
        ):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value} must be positive and finite")
        for name in (
            "bradycardia_beats",
            "tachycardia_beats",
            "ventricular_tachycardia_beats",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 1")
        if self.bradycardia_bpm >= self.tachycardia_bpm:
            raise ValueError(
                f"bradycardia_bpm={self.bradycardia_bpm} must be below "
                f"tachycardia_bpm={self.tachycardia_bpm}"
            )
        if not 0.0 <= self.noisy_quality_index <= 1.0:
            raise ValueError(
                f"noisy_quality_index={self.noisy_quality_index} must be within 0..1"
            )
        codes = [limit.code for limit in self.limits]
        if len(set(codes)) != len(codes):
            raise ValueError(f"limits must name each code once, got {codes}")

    def check(self, sample_rate_hz: float) -> None:
        """Raise ValueError, naming the parameter, if these settings cannot run at
        `sample_rate_hz`: an unsupported rate, or a filter that cannot be designed."""
        rate = validate_sample_rate(sample_rate_hz)
        design_mains_notch(rate, self.mains_hz)
        design_baseline_highpass(rate)
        design_qrs_bandpass(rate)

    def heart_rate_limit(self) -> NumericLimit | None:
        """Return the heart-rate limits, or None if none are configured."""
        for limit in self.limits:
            if limit.code == HEART_RATE:
                return limit
        return None

