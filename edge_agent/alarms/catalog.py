"""Alarm kinds with their priority, category, condition delay and latching.

Priorities follow IEC 60601-1-8 practice: high for conditions that need immediate
response (life-threatening arrhythmias), medium for prompt response (vital-sign limits
and technical conditions that stop arrhythmia monitoring), low for awareness.
"""

import logging
from dataclasses import dataclass
from enum import StrEnum

logger = logging.getLogger(__name__)


class AlarmKind(StrEnum):
    ASYSTOLE = "asystole"
    EXTREME_BRADYCARDIA = "extreme_bradycardia"
    EXTREME_TACHYCARDIA = "extreme_tachycardia"
    VENTRICULAR_TACHYCARDIA = "ventricular_tachycardia"
    VENTRICULAR_FIBRILLATION = "ventricular_flutter_fibrillation"
    LEADS_OFF = "leads_off"
    # The ECG shows asystole or extreme bradycardia that a pulse signal contradicts.
    ECG_UNRELIABLE = "ecg_unreliable"
    SIGNAL_NOISY = "signal_noisy"
    SENSOR_SILENT = "sensor_silent"
    # A Bluetooth LE sensor has sent no data for the configured grace time.
    SENSOR_DISCONNECTED = "sensor_disconnected"
    # A Bluetooth LE sensor reports a battery charge at or below the configured level.
    SENSOR_BATTERY_LOW = "sensor_battery_low"
    SAMPLE_RATE_MISMATCH = "sample_rate_mismatch"
    BUFFER_TROUBLE = "buffer_trouble"
    LINK_LOST = "link_lost"


class AlarmPriority(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class AlarmCategory(StrEnum):
    PHYSIOLOGICAL = "physiological"
    TECHNICAL = "technical"


class AlarmState(StrEnum):
    RAISED = "raised"
    CLEARED = "cleared"


@dataclass(frozen=True)
class AlarmPolicy:
    """How the engine treats one alarm kind."""

    priority: str
    category: str = AlarmCategory.PHYSIOLOGICAL
    # Alarm condition delay: the condition must last this long before the alarm is
    # raised (s).
    delay_s: float = 0.0
    # A latching alarm stays raised after its condition ends, until acknowledged.
    latching: bool = False

    def __post_init__(self) -> None:
        if not self.delay_s >= 0.0:
            raise ValueError(f"delay_s={self.delay_s} must be zero or positive")
        if self.priority not in set(AlarmPriority):
            raise ValueError(f"priority={self.priority!r} must be high, medium or low")
        if self.category not in set(AlarmCategory):
            raise ValueError(
                f"category={self.category!r} must be physiological or technical"
            )


# Physiological limit alarms (heart rate, SpO2, ...) wait this long, so a brief
# excursion such as a cough or a movement artefact does not alarm. 10 s is a common
# monitor default. It is an estimate, to be set per patient.
LIMIT_DELAY_S = 10.0
# A flat or saturated ECG is reported after this much more time than the 2 s quality
# window that detects it, so a brief electrode touch does not alarm.
LEADS_OFF_DELAY_S = 1.0
# The signal quality index must stay low this long before the noise alarm.
NOISY_DELAY_S = 5.0


def _technical(priority: str, delay_s: float = 0.0) -> AlarmPolicy:
    return AlarmPolicy(priority, AlarmCategory.TECHNICAL, delay_s=delay_s)


def _life_threatening() -> AlarmPolicy:
    return AlarmPolicy(AlarmPriority.HIGH, latching=True)


DEFAULT_POLICIES: dict[str, AlarmPolicy] = {
    AlarmKind.ASYSTOLE: _life_threatening(),
    AlarmKind.EXTREME_BRADYCARDIA: _life_threatening(),
    AlarmKind.EXTREME_TACHYCARDIA: _life_threatening(),
    AlarmKind.VENTRICULAR_TACHYCARDIA: _life_threatening(),
    AlarmKind.VENTRICULAR_FIBRILLATION: _life_threatening(),
    AlarmKind.LEADS_OFF: _technical(AlarmPriority.MEDIUM, LEADS_OFF_DELAY_S),
    AlarmKind.SIGNAL_NOISY: _technical(AlarmPriority.LOW, NOISY_DELAY_S),
    # Medium, as for leads off: the withheld arrhythmia alarm is no longer monitored.
    AlarmKind.ECG_UNRELIABLE: _technical(AlarmPriority.MEDIUM),
    AlarmKind.SENSOR_SILENT: _technical(AlarmPriority.MEDIUM),
    AlarmKind.SENSOR_DISCONNECTED: _technical(AlarmPriority.MEDIUM),
    # Low: the sensor still measures; staff have time to charge or swap it.
    AlarmKind.SENSOR_BATTERY_LOW: _technical(AlarmPriority.LOW),
    AlarmKind.SAMPLE_RATE_MISMATCH: _technical(AlarmPriority.MEDIUM),
    AlarmKind.BUFFER_TROUBLE: _technical(AlarmPriority.LOW),
    AlarmKind.LINK_LOST: _technical(AlarmPriority.MEDIUM),
}


def limit_policy(delay_s: float = LIMIT_DELAY_S) -> AlarmPolicy:
    """Return the policy of a vital-sign limit alarm: medium priority, not latching."""
    return AlarmPolicy(AlarmPriority.MEDIUM, delay_s=delay_s)
