"""The ward task list: what the caller should look at first, and why.

``GET /care/ward`` lists, for the patients the caller may read (a current assignment,
or every patient for an administrator), first each active alarm and then each
patient by NEWS2 from their latest vital signs. Every item carries its rank and a
``reason``, one sentence explaining its place. The read is audited.

Ordering: active alarms come first because a device has already decided that
someone must respond. They are ordered high, medium, low priority, then oldest
first, since the longest-unanswered alarm has waited most. Patients follow, highest
clinical risk first, then highest total, then by id.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.audit import Actor
from central.auth import require_user
from central.consent import readable_patients
from central.news2 import (
    PARAMETERS,
    RISK_ORDER,
    News2Score,
    Observations,
    score_news2,
)
from central.services import services_of
from protocol.codes import VitalSign

logger = logging.getLogger(__name__)

# RCP NEWS2 (2017), chart 4: even a score of 0 calls for observations at least every
# 12 hours, so an older value no longer describes the patient.
MAX_OBSERVATION_AGE = timedelta(hours=12)
PRIORITY_ORDER = {"high": 0, "medium": 1, "low": 2}

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
NOT_FROM_DEVICES = "not measured by the bedside devices; assess and record it"
NOT_RECENT = f"no measurement in the last {MAX_OBSERVATION_AGE // timedelta(hours=1)} h"


async def ward_tasks(request: Request) -> JSONResponse:
    """Return the caller's ranked task list: active alarms, then patients by NEWS2.
    ---
    summary: The caller's ward task list, most urgent first
    tags: [care]
    security: [{bearerAuth: []}]
    responses:
      "200": {description: The ranked items}
      "401": {$ref: "#/components/responses/Unauthorized"}
    """
    principal = await require_user(request)
    services = services_of(request)
    now = datetime.now(UTC)
    patients = await readable_patients(services.pool, principal)
    patient_ids = [row["id"] for row in patients]
    beds = {row["id"]: row["bed_label"] for row in patients}
    alarms = await _active_alarms(services.pool, patient_ids)
    latest = await _latest_vitals(services.pool, patient_ids, now)
    items = [_alarm_item(row, now) for row in alarms]
    items += _news2_items(patient_ids, latest)
    for rank, item in enumerate(items, start=1):
        item["rank"] = rank
        item["bed_label"] = beds[item["patient_id"]]
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        "care.ward.read",
        detail={"patient_ids": patient_ids, "active_alarms": len(alarms)},
    )
    return JSONResponse(
        {"generated_at": now.isoformat(), "patients": patient_ids, "items": items}
    )


async def _active_alarms(
    pool: asyncpg.Pool, patient_ids: list[str]
) -> list[asyncpg.Record]:
    # A raise and its clear share (device_id, alarm_id); the alarm is active while
    # its newest message, by sequence number, is the raise.
    rows = await pool.fetch(
        """
        SELECT * FROM (
            SELECT DISTINCT ON (device_id, alarm_id)
                   device_id, alarm_id, patient_id, kind, priority, category, state,
                   started_at, evidence
            FROM alarms WHERE patient_id = ANY($1::text[])
            ORDER BY device_id, alarm_id, seq DESC
        ) newest
        WHERE state = 'raised'
        """,
        patient_ids,
    )
    return sorted(
        rows,
        key=lambda row: (
            PRIORITY_ORDER[row["priority"]],
            row["started_at"],
            row["patient_id"],
        ),
    )


async def _latest_vitals(
    pool: asyncpg.Pool, patient_ids: list[str], now: datetime
) -> dict[str, dict[str, asyncpg.Record]]:
    rows = await pool.fetch(
        """
        SELECT DISTINCT ON (patient_id, code) patient_id, code, value, measured_at
        FROM vitals
        WHERE patient_id = ANY($1::text[]) AND code = ANY($2::text[])
          AND measured_at >= $3
        ORDER BY patient_id, code, measured_at DESC
        """,
        patient_ids,
        NEWS2_CODES,
        now - MAX_OBSERVATION_AGE,
    )
    latest: dict[str, dict[str, asyncpg.Record]] = {}
    for row in rows:
        latest.setdefault(row["patient_id"], {})[row["code"]] = row
    return latest


def _alarm_item(row: asyncpg.Record, now: datetime) -> dict[str, Any]:
    waited = _duration(now - row["started_at"])
    reason = (
        f"active {row['priority']}-priority {row['category']} alarm "
        f"({row['kind']}) raised {waited} ago; active alarms come first, by "
        "priority and then oldest first"
    )
    alarm = {
        "device_id": row["device_id"],
        "alarm_id": row["alarm_id"],
        "kind": row["kind"],
        "priority": row["priority"],
        "category": row["category"],
        "started_at": row["started_at"].isoformat(),
        "evidence": row["evidence"],
    }
    return {
        "kind": "alarm",
        "patient_id": row["patient_id"],
        "reason": reason,
        "alarm": alarm,
    }


def _news2_items(
    patient_ids: list[str], latest: dict[str, dict[str, asyncpg.Record]]
) -> list[dict[str, Any]]:
    ranked = []
    for patient_id in patient_ids:
        score, item = _news2_item(patient_id, latest.get(patient_id, {}))
        # Patients without a scorable parameter go last: no data shows a risk.
        key = (not score.parts, -RISK_ORDER[score.risk], -score.total, patient_id)
        ranked.append((key, item))
    ranked.sort(key=lambda pair: pair[0])
    return [item for _, item in ranked]


def _news2_item(
    patient_id: str, latest: dict[str, asyncpg.Record]
) -> tuple[News2Score, dict[str, Any]]:
    values: dict[str, float] = {}
    measured_at: dict[str, str] = {}
    for parameter, signs in NEWS2_SOURCES.items():
        codes = [sign.value.mdc_reference_id for sign in signs]
        found = [latest[code] for code in codes if code in latest]
        newest = max(found, key=lambda row: row["measured_at"], default=None)
        if newest is not None:
            values[parameter] = newest["value"]
            measured_at[parameter] = newest["measured_at"].isoformat()
    # NOTE: central stores neither air or oxygen, consciousness nor hypercapnic
    # respiratory failure, so those two parts are always missing and SpO2 is always
    # scored on scale 1, which overstates the score of a patient targeting 88-92 %.
    score = score_news2(Observations(**values))
    news2 = score.to_dict()
    news2["measured_at"] = measured_at
    news2["missing"] = [
        {"parameter": name, "reason": _missing_reason(name)} for name in score.missing
    ]
    item = {
        "kind": "news2",
        "patient_id": patient_id,
        "reason": _news2_reason(score),
        "news2": news2,
    }
    return score, item


def _missing_reason(parameter: str) -> str:
    return NOT_RECENT if parameter in NEWS2_SOURCES else NOT_FROM_DEVICES


def _news2_reason(score: News2Score) -> str:
    if not score.parts:
        return (
            f"NEWS2 cannot be scored: {NOT_RECENT} of any parameter; patients "
            "without observations come after every scored patient"
        )
    text = f"NEWS2 {score.total}, {score.risk.value} risk"
    if score.red_score_parameters:
        text += f" (3 in {', '.join(score.red_score_parameters)})"
    if score.missing:
        text += (
            f", at least: {len(score.missing)} of {len(PARAMETERS)} parameters missing "
            "and not counted"
        )
    return text + (
        "; patients follow the active alarms, highest risk first, then highest score"
    )


def _duration(elapsed: timedelta) -> str:
    seconds = max(0, int(elapsed.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


routes = [Route("/care/ward", ward_tasks, methods=["GET"])]
