"""The NEWS2 inputs of each patient at a given time, from devices and manual entries.

Each parameter takes the newest value measured within ``MAX_OBSERVATION_AGE`` before
that time, whether a bedside device or a clinician recorded it. Air or oxygen and
consciousness come only from manual observations.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

import asyncpg

from central.news2 import News2Score, Observations, score_news2
from central.observations import latest_manual_values
from protocol.codes import VitalSign

# RCP NEWS2 (2017), chart 4: even a score of 0 calls for observations at least every
# 12 hours, so an older value no longer describes the patient.
MAX_OBSERVATION_AGE = timedelta(hours=12)

# NEWS2 parameter -> vital-sign codes that can supply it, by preference. Pulse comes
# from the ECG heart rate or the oximeter pulse rate, whichever is newer.
NEWS2_SOURCES: dict[str, tuple[VitalSign, ...]] = {
    "respiration_rate": (VitalSign.RESPIRATION_RATE,),
    "spo2": (VitalSign.SPO2,),
    "systolic_bp": (VitalSign.SYSTOLIC_BP,),
    "pulse": (VitalSign.HEART_RATE, VitalSign.PULSE_RATE),
    "temperature": (VitalSign.TEMPERATURE,),
}
NEWS2_CODES = sorted(
    sign.value.mdc_reference_id for signs in NEWS2_SOURCES.values() for sign in signs
)
# Manual observation fields -> the NEWS2 parameter each supplies.
MANUAL_PARAMETERS = {
    "on_oxygen": "air_or_oxygen",
    "consciousness": "consciousness",
    "respiration_rate": "respiration_rate",
    "spo2": "spo2",
    "systolic_bp": "systolic_bp",
    "pulse": "pulse",
    "temperature": "temperature",
}


@dataclass
class News2Inputs:
    """One patient's newest values, when each was measured, and by what source."""

    values: dict[str, object] = field(default_factory=dict)
    measured_at: dict[str, datetime] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def offer(self, parameter: str, value: object, at: datetime, source: str) -> None:
        """Keep ``value`` unless a newer value of ``parameter`` is already held."""
        known = self.measured_at.get(parameter)
        if known is None or at > known:
            self.values[parameter] = value
            self.measured_at[parameter] = at
            self.sources[parameter] = source

    def observations(self, only: set[str] | None = None) -> Observations:
        """Return the values as NEWS2 observations, limited to ``only`` if given."""
        kept = {
            name: value
            for name, value in self.values.items()
            if only is None or name in only
        }
        if "air_or_oxygen" in kept:
            kept["on_oxygen"] = kept.pop("air_or_oxygen")
        return Observations(**kept)  # type: ignore[arg-type]

    def score(self, only: set[str] | None = None) -> News2Score:
        return score_news2(self.observations(only))


async def load_news2_inputs(
    pool: asyncpg.Pool, patient_ids: list[str], at: datetime
) -> dict[str, News2Inputs]:
    """Return the NEWS2 inputs of every patient as they stood at ``at``."""
    inputs = {patient_id: News2Inputs() for patient_id in patient_ids}
    rows = await pool.fetch(
        """
        SELECT DISTINCT ON (patient_id, code) patient_id, code, value, measured_at
        FROM vitals
        WHERE patient_id = ANY($1::text[]) AND code = ANY($2::text[])
          AND measured_at >= $3 AND measured_at <= $4
        ORDER BY patient_id, code, measured_at DESC
        """,
        patient_ids,
        NEWS2_CODES,
        at - MAX_OBSERVATION_AGE,
        at,
    )
    parameter_of_code = {
        sign.value.mdc_reference_id: parameter
        for parameter, signs in NEWS2_SOURCES.items()
        for sign in signs
    }
    for row in rows:
        inputs[row["patient_id"]].offer(
            parameter_of_code[row["code"]], row["value"], row["measured_at"], "device"
        )
    manual = await latest_manual_values(
        pool, patient_ids, at - MAX_OBSERVATION_AGE, at
    )
    for patient_id, values in manual.items():
        for name, entry in values.items():
            inputs[patient_id].offer(
                MANUAL_PARAMETERS[name], entry.value, entry.observed_at, "manual"
            )
    return inputs
