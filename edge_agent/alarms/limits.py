"""Vital-sign limit alarms with hysteresis, fed one numeric value at a time.

A limit condition starts when a value goes beyond a limit and ends only when a value
is back inside it by the hysteresis, so a value hovering at the limit does not make the
alarm chatter. The alarm kind is `<code>_low` or `<code>_high`, for example
`spo2_low`.
"""

import logging
import math
from dataclasses import dataclass

from edge_agent.alarms.catalog import AlarmPriority, AlarmState
from edge_agent.alarms.change import AlarmChange

logger = logging.getLogger(__name__)

HEART_RATE = "heart_rate"
SPO2 = "spo2"
RESPIRATION_RATE = "respiration_rate"
SYSTOLIC_BP = "systolic_bp"
TEMPERATURE = "temperature"


@dataclass(frozen=True)
class NumericLimit:
    """Alarm limits of one vital sign. None disables that side."""

    code: str
    low: float | None
    high: float | None
    unit: str
    hysteresis: float
    delay_s: float = 10.0

    def __post_init__(self) -> None:
        if not self.code:
            raise ValueError("code must not be empty")
        if not self.hysteresis >= 0.0:
            raise ValueError(f"hysteresis={self.hysteresis} for {self.code} must be >= 0")
        if not self.delay_s >= 0.0:
            raise ValueError(f"delay_s={self.delay_s} for {self.code} must be >= 0")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise ValueError(
                f"low={self.low} must be below high={self.high} for {self.code}"
            )


# Adult defaults, estimates in line with common bedside monitor defaults. They are meant
# to be set per patient.
DEFAULT_LIMITS: tuple[NumericLimit, ...] = (
    NumericLimit(HEART_RATE, 50.0, 120.0, "bpm", hysteresis=5.0),
    NumericLimit(SPO2, 90.0, None, "%", hysteresis=1.0),
    NumericLimit(RESPIRATION_RATE, 8.0, 30.0, "/min", hysteresis=2.0),
    NumericLimit(SYSTOLIC_BP, 90.0, 160.0, "mmHg", hysteresis=5.0),
    NumericLimit(TEMPERATURE, 35.0, 38.5, "degC", hysteresis=0.2),
)


class LimitRule:
    """Low and high limit conditions of one vital sign."""

    def __init__(self, limit: NumericLimit) -> None:
        self.limit = limit
        self._beyond: dict[str, bool] = {"low": False, "high": False}

    def kinds(self) -> list[str]:
        """Return the alarm kinds this rule can raise."""
        sides = [side for side in ("low", "high") if getattr(self.limit, side) is not None]
        return [f"{self.limit.code}_{side}" for side in sides]

    def update(self, value: float, sample: int) -> list[AlarmChange]:
        """Compare one value with the limits and return condition starts and ends."""
        if not math.isfinite(value):
            logger.warning("Ignored non-finite %s value %r", self.limit.code, value)
            return []
        changes: list[AlarmChange] = []
        for side in ("low", "high"):
            bound = getattr(self.limit, side)
            if bound is None:
                continue
            change = self._check_side(side, bound, value, sample)
            if change is not None:
                changes.append(change)
        return changes

    def _check_side(
        self, side: str, bound: float, value: float, sample: int
    ) -> AlarmChange | None:
        sign = -1.0 if side == "low" else 1.0
        unit = self.limit.unit
        kind = f"{self.limit.code}_{side}"
        if not self._beyond[side]:
            if sign * (value - bound) <= 0.0:
                return None
            self._beyond[side] = True
            relation = "below" if side == "low" else "above"
            evidence = f"{self.limit.code} {value:.4g} {unit} {relation} {bound:g} {unit}"
            return _change(kind, AlarmState.RAISED, sample, evidence)
        back_inside = bound - sign * self.limit.hysteresis
        if sign * (value - back_inside) > 0.0:
            return None
        self._beyond[side] = False
        evidence = (
            f"{self.limit.code} {value:.4g} {unit} back inside the limit by at least "
            f"{self.limit.hysteresis:g} {unit}"
        )
        return _change(kind, AlarmState.CLEARED, sample, evidence)


def _change(kind: str, state: str, sample: int, evidence: str) -> AlarmChange:
    return AlarmChange(kind, AlarmPriority.MEDIUM, state, sample, evidence)
