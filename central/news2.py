"""The National Early Warning Score 2 (NEWS2) from one set of observations.

Source of every band and threshold: Royal College of Physicians, "National Early
Warning Score (NEWS) 2: Standardising the assessment of acute-illness severity in
the NHS", updated report of a working party, London, RCP 2017; chart 1 (the scoring
system) and chart 2 (thresholds and triggers, the clinical risk bands).

Pure functions, no I/O. A parameter without a value is reported in ``missing`` and
adds nothing to the total, so a partial score is a lower bound, never a guess.
Monitor values are rounded half up to the chart's resolution first (whole numbers,
temperature to 0.1 degC), as they would be written on a paper chart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from typing import Any


class Consciousness(StrEnum):
    """The ACVPU scale; any level other than alert scores 3."""

    ALERT = "A"
    NEW_CONFUSION = "C"
    VOICE = "V"
    PAIN = "P"
    UNRESPONSIVE = "U"


class RiskBand(StrEnum):
    """Clinical risk from chart 2, in increasing order of urgency."""

    LOW = "low"
    LOW_MEDIUM = "low-medium"
    MEDIUM = "medium"
    HIGH = "high"


RISK_ORDER = {band: rank for rank, band in enumerate(RiskBand)}
# Chart 2: aggregate 5-6 is medium risk, 7 or more high risk, and a score of 3 in
# any single parameter (a "red score") raises an aggregate of 0-4 to low-medium.
MEDIUM_RISK_MIN_TOTAL = 5
HIGH_RISK_MIN_TOTAL = 7
RED_SCORE = 3

PARAMETERS = (
    "respiration_rate",
    "spo2",
    "air_or_oxygen",
    "systolic_bp",
    "pulse",
    "consciousness",
    "temperature",
)


@dataclass(frozen=True)
class Band:
    """One cell of chart 1. Values from low to high, inclusive, score ``score``.

    A bound of None leaves that end open.
    """

    label: str
    low: Decimal | None
    high: Decimal | None
    score: int

    def contains(self, value: Decimal) -> bool:
        above_low = self.low is None or value >= self.low
        below_high = self.high is None or value <= self.high
        return above_low and below_high


def _band(label: str, low: str | None, high: str | None, score: int) -> Band:
    return Band(
        label,
        None if low is None else Decimal(low),
        None if high is None else Decimal(high),
        score,
    )


RESPIRATION_RATE_BANDS = (  # breaths /min
    _band("<=8", None, "8", 3),
    _band("9-11", "9", "11", 1),
    _band("12-20", "12", "20", 0),
    _band("21-24", "21", "24", 2),
    _band(">=25", "25", None, 3),
)
SPO2_SCALE_1_BANDS = (  # %
    _band("<=91", None, "91", 3),
    _band("92-93", "92", "93", 2),
    _band("94-95", "94", "95", 1),
    _band(">=96", "96", None, 0),
)
# Scale 2 is for patients with hypercapnic respiratory failure and a prescribed
# target of 88-92 %. Up to 92 % oxygen makes no difference.
SPO2_SCALE_2_LOW_BANDS = (  # %
    _band("<=83", None, "83", 3),
    _band("84-85", "84", "85", 2),
    _band("86-87", "86", "87", 1),
    _band("88-92", "88", "92", 0),
)
SPO2_SCALE_2_TARGET_MAX = Decimal(92)  # %
SPO2_SCALE_2_ON_AIR_BANDS = (_band(">=93 on air", "93", None, 0),)
SPO2_SCALE_2_ON_OXYGEN_BANDS = (  # %
    _band("93-94 on oxygen", "93", "94", 1),
    _band("95-96 on oxygen", "95", "96", 2),
    _band(">=97 on oxygen", "97", None, 3),
)
SYSTOLIC_BP_BANDS = (  # mmHg
    _band("<=90", None, "90", 3),
    _band("91-100", "91", "100", 2),
    _band("101-110", "101", "110", 1),
    _band("111-219", "111", "219", 0),
    _band(">=220", "220", None, 3),
)
PULSE_BANDS = (  # beats /min
    _band("<=40", None, "40", 3),
    _band("41-50", "41", "50", 1),
    _band("51-90", "51", "90", 0),
    _band("91-110", "91", "110", 1),
    _band("111-130", "111", "130", 2),
    _band(">=131", "131", None, 3),
)
TEMPERATURE_BANDS = (  # degC
    _band("<=35.0", None, "35.0", 3),
    _band("35.1-36.0", "35.1", "36.0", 1),
    _band("36.1-38.0", "36.1", "38.0", 0),
    _band("38.1-39.0", "38.1", "39.0", 1),
    _band(">=39.1", "39.1", None, 2),
)
OXYGEN_SCORE = 2
ALTERED_CONSCIOUSNESS_SCORE = 3
WHOLE = Decimal(1)
TENTH = Decimal("0.1")


@dataclass(frozen=True)
class Observations:
    """One set of observations; None means not measured."""

    respiration_rate: float | None = None  # breaths /min
    spo2: float | None = None  # %
    on_oxygen: bool | None = None  # supplemental oxygen (True) or air (False)
    systolic_bp: float | None = None  # mmHg
    pulse: float | None = None  # beats /min
    consciousness: Consciousness | None = None
    temperature: float | None = None  # degC
    # Use SpO2 scale 2; only a clinician who has confirmed hypercapnic respiratory
    # failure should choose it (RCP 2017).
    hypercapnic: bool = False


@dataclass(frozen=True)
class ParameterScore:
    """The part one parameter contributes, with the chart band it fell in."""

    parameter: str
    value: float | str | bool
    band: str
    score: int


@dataclass(frozen=True)
class News2Score:
    """A NEWS2 total with its parts; with parameters missing, a lower bound."""

    total: int
    risk: RiskBand
    parts: tuple[ParameterScore, ...]
    missing: tuple[str, ...]
    spo2_scale: int

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def red_score_parameters(self) -> list[str]:
        return [part.parameter for part in self.parts if part.score == RED_SCORE]

    def to_dict(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "risk": self.risk.value,
            "complete": self.complete,
            "spo2_scale": self.spo2_scale,
            "parts": {
                part.parameter: {
                    "value": part.value,
                    "band": part.band,
                    "score": part.score,
                }
                for part in self.parts
            },
            "missing": list(self.missing),
        }


def score_news2(observations: Observations) -> News2Score:
    """Score ``observations``; raise ValueError on a negative or non-finite value."""
    parts: list[ParameterScore] = []
    missing: list[str] = []
    for parameter in PARAMETERS:
        part = _score_parameter(parameter, observations)
        if part is None:
            missing.append(parameter)
        else:
            parts.append(part)
    total = sum(part.score for part in parts)
    return News2Score(
        total=total,
        risk=risk_band(total, any(part.score == RED_SCORE for part in parts)),
        parts=tuple(parts),
        missing=tuple(missing),
        spo2_scale=2 if observations.hypercapnic else 1,
    )


def risk_band(total: int, has_red_score: bool) -> RiskBand:
    """Return the chart 2 clinical risk for an aggregate score."""
    if total >= HIGH_RISK_MIN_TOTAL:
        return RiskBand.HIGH
    if total >= MEDIUM_RISK_MIN_TOTAL:
        return RiskBand.MEDIUM
    if has_red_score:
        return RiskBand.LOW_MEDIUM
    return RiskBand.LOW


def _score_parameter(parameter: str, obs: Observations) -> ParameterScore | None:
    if parameter == "air_or_oxygen":
        if obs.on_oxygen is None:
            return None
        label = "oxygen" if obs.on_oxygen else "air"
        score = OXYGEN_SCORE if obs.on_oxygen else 0
        return ParameterScore(parameter, label, label, score)
    if parameter == "consciousness":
        if obs.consciousness is None:
            return None
        level = Consciousness(obs.consciousness)
        score = 0 if level is Consciousness.ALERT else ALTERED_CONSCIOUSNESS_SCORE
        return ParameterScore(parameter, level.value, level.name.lower(), score)
    if parameter == "spo2":
        return _score_spo2(obs)
    value: float | None = getattr(obs, parameter)
    if value is None:
        return None
    bands, resolution = _NUMERIC_BANDS[parameter]
    return _score_value(parameter, value, bands, resolution)


def _score_spo2(obs: Observations) -> ParameterScore | None:
    if obs.spo2 is None:
        return None
    if not obs.hypercapnic:
        return _score_value("spo2", obs.spo2, SPO2_SCALE_1_BANDS, WHOLE)
    if _rounded("spo2", obs.spo2, WHOLE) <= SPO2_SCALE_2_TARGET_MAX:
        return _score_value("spo2", obs.spo2, SPO2_SCALE_2_LOW_BANDS, WHOLE)
    # Above 92 % scale 2 scores by air or oxygen; without that the part is unknown.
    if obs.on_oxygen is None:
        return None
    if obs.on_oxygen:
        bands = SPO2_SCALE_2_ON_OXYGEN_BANDS
    else:
        bands = SPO2_SCALE_2_ON_AIR_BANDS
    return _score_value("spo2", obs.spo2, bands, WHOLE)


def _score_value(
    parameter: str, value: float, bands: tuple[Band, ...], resolution: Decimal
) -> ParameterScore:
    rounded = _rounded(parameter, value, resolution)
    for band in bands:
        if band.contains(rounded):
            return ParameterScore(parameter, value, band.label, band.score)
    raise AssertionError(f"{parameter}: bands leave {rounded} uncovered")


def _rounded(parameter: str, value: float, resolution: Decimal) -> Decimal:
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{parameter}: expected a finite value >= 0, got {value!r}")
    return Decimal(str(value)).quantize(resolution, rounding=ROUND_HALF_UP)


_NUMERIC_BANDS: dict[str, tuple[tuple[Band, ...], Decimal]] = {
    "respiration_rate": (RESPIRATION_RATE_BANDS, WHOLE),
    "systolic_bp": (SYSTOLIC_BP_BANDS, WHOLE),
    "pulse": (PULSE_BANDS, WHOLE),
    "temperature": (TEMPERATURE_BANDS, TENTH),
}
