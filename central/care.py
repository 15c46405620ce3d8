"""The ward task list: what the caller should look at first, and why.

``GET /care/ward`` lists, for the patients the caller may read (as decided by
``central.consent.readable_patients``), items of these kinds in this order:

1. ``alarm``: active alarms, high, medium, then low priority. Within a priority the
   unacknowledged come before the acknowledged, then the oldest first, because the
   longest-unanswered alarm has waited most. Escalated alarms carry the escalation.
2. ``news2``: each patient by NEWS2 from their newest device and manual
   observations, highest clinical risk first, then highest total, then by id.
3. ``trend``: automated trend tasks, only when ENABLE_AI_AGENTS is on
   (``central.trends``).
4. ``observations_due``: patients whose last full observation set is older than
   NEWS2 recommends for their score.
5. ``unacknowledged_alarm``: high and medium alarms of the last 12 h that cleared
   before anyone acknowledged them.
6. ``device``: devices that are silent or have an active technical alarm.

Active alarms come first because a device has already decided that someone must
respond. Every item carries its rank and a ``reason``, one sentence explaining its
place. The read is audited.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.audit import Actor
from central.auth import require_user
from central.care_checks import (
    PRIORITY_ORDER,
    device_items,
    format_duration,
    load_bed_devices,
    load_unacknowledged_cleared,
    observations_due_items,
    unacknowledged_items,
)
from central.consent import readable_patients
from central.escalation import load_escalations
from central.news2 import PARAMETERS, RISK_ORDER, News2Score
from central.news2_inputs import (
    MAX_OBSERVATION_AGE,
    NEWS2_SOURCES,
    News2Inputs,
    load_news2_inputs,
)
from central.services import services_of
from central.trends import trend_items

logger = logging.getLogger(__name__)

_HOURS = int(MAX_OBSERVATION_AGE.total_seconds() // 3600)
NOT_RECENT = f"no measurement in the last {_HOURS} h"
NOT_FROM_DEVICES = (
    "not measured by the bedside devices and not recorded by hand in the last "
    f"{_HOURS} h; assess it and record it with POST /patients/{{id}}/observations"
)


async def ward_tasks(request: Request) -> JSONResponse:
    """Return the caller's ranked task list (see the module documentation).
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
    pool = services.pool

    alarms = await _active_alarms(pool, patient_ids)
    acknowledgements = await _acknowledgements(pool, patient_ids)
    escalations = await load_escalations(pool, patient_ids)
    inputs = await load_news2_inputs(pool, patient_ids, now)
    scores = {patient_id: inputs[patient_id].score() for patient_id in patient_ids}

    items = _alarm_items(alarms, acknowledgements, escalations, now)
    items += _news2_items(patient_ids, inputs, scores)
    if services.settings.ai_agents_enabled:
        items += await trend_items(pool, patient_ids, inputs, now)
    items += observations_due_items(inputs, scores, now)
    cleared = await load_unacknowledged_cleared(pool, patient_ids, now)
    items += unacknowledged_items(cleared, now)
    items += device_items(await load_bed_devices(pool, patient_ids), alarms, now)
    for rank, item in enumerate(items, start=1):
        item["rank"] = rank
        item["bed_label"] = beds[item["patient_id"]]

    await services.audit.record(
        pool,
        Actor.user(principal.user_id),
        "care.ward.read",
        detail={"patient_ids": patient_ids, "active_alarms": len(alarms)},
    )
    body = {
        "generated_at": now.isoformat(),
        "patients": patient_ids,
        "ai_agents": services.settings.ai_agents_enabled,
        "items": items,
    }
    return JSONResponse(body)


async def _active_alarms(
    pool: asyncpg.Pool, patient_ids: list[str]
) -> list[asyncpg.Record]:
    # A raise and its clear share (device_id, alarm_id); the alarm is active while
    # its newest message, by sequence number, is the raise.
    return await pool.fetch(
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


async def _acknowledgements(
    pool: asyncpg.Pool, patient_ids: list[str]
) -> dict[tuple[str, str], asyncpg.Record]:
    rows = await pool.fetch(
        """
        SELECT DISTINCT ON (device_id, alarm_id) device_id, alarm_id,
               acknowledged_by, at
        FROM alarm_acknowledgements WHERE patient_id = ANY($1::text[])
        ORDER BY device_id, alarm_id, id
        """,
        patient_ids,
    )
    return {(row["device_id"], row["alarm_id"]): row for row in rows}


def _alarm_items(
    alarms: list[asyncpg.Record],
    acknowledgements: dict[tuple[str, str], asyncpg.Record],
    escalations: dict[tuple[str, str], asyncpg.Record],
    now: datetime,
) -> list[dict[str, Any]]:
    def order(row: asyncpg.Record) -> tuple[object, ...]:
        acknowledged = (row["device_id"], row["alarm_id"]) in acknowledgements
        return (
            PRIORITY_ORDER[row["priority"]],
            acknowledged,
            row["started_at"],
            row["patient_id"],
        )

    items = []
    for row in sorted(alarms, key=order):
        key = (row["device_id"], row["alarm_id"])
        items.append(
            _alarm_item(row, acknowledgements.get(key), escalations.get(key), now)
        )
    return items


def _alarm_item(
    row: asyncpg.Record,
    acknowledgement: asyncpg.Record | None,
    escalation: asyncpg.Record | None,
    now: datetime,
) -> dict[str, Any]:
    waited = format_duration(now - row["started_at"])
    reason = (
        f"active {row['priority']}-priority {row['category']} alarm "
        f"({row['kind']}) raised {waited} ago"
    )
    if acknowledgement is not None:
        reason += f", acknowledged by {acknowledgement['acknowledged_by']}"
    else:
        reason += ", not acknowledged"
    if escalation is not None:
        reason += (
            f", escalated to the {escalation['recipient_role']} "
            f"{format_duration(now - escalation['escalated_at'])} ago"
        )
    reason += (
        "; active alarms come first, by priority, unacknowledged before "
        "acknowledged, then oldest first"
    )
    alarm = {
        "device_id": row["device_id"],
        "alarm_id": row["alarm_id"],
        "kind": row["kind"],
        "priority": row["priority"],
        "category": row["category"],
        "started_at": row["started_at"].isoformat(),
        "evidence": row["evidence"],
        "acknowledged": None,
        "escalation": None,
    }
    if acknowledgement is not None:
        alarm["acknowledged"] = {
            "by": acknowledgement["acknowledged_by"],
            "at": acknowledgement["at"].isoformat(),
        }
    if escalation is not None:
        alarm["escalation"] = {
            "escalated_at": escalation["escalated_at"].isoformat(),
            "recipient_role": escalation["recipient_role"],
            "recipient_user_ids": list(escalation["recipient_user_ids"]),
        }
    return {
        "kind": "alarm",
        "patient_id": row["patient_id"],
        "reason": reason,
        "alarm": alarm,
    }


def _news2_items(
    patient_ids: list[str],
    inputs: dict[str, News2Inputs],
    scores: dict[str, News2Score],
) -> list[dict[str, Any]]:
    ranked = []
    for patient_id in patient_ids:
        score = scores[patient_id]
        item = _news2_item(patient_id, inputs[patient_id], score)
        # Patients without a scorable parameter go last: no data shows a risk.
        key = (not score.parts, -RISK_ORDER[score.risk], -score.total, patient_id)
        ranked.append((key, item))
    ranked.sort(key=lambda pair: pair[0])
    return [item for _, item in ranked]


def _news2_item(
    patient_id: str, inputs: News2Inputs, score: News2Score
) -> dict[str, Any]:
    # NOTE: hypercapnic respiratory failure is not recorded, so SpO2 is always
    # scored on scale 1, which overstates the score of a patient targeting 88-92 %.
    news2 = score.to_dict()
    news2["measured_at"] = {
        name: at.isoformat() for name, at in inputs.measured_at.items()
    }
    news2["sources"] = dict(inputs.sources)
    news2["missing"] = [
        {"parameter": name, "reason": _missing_reason(name)} for name in score.missing
    ]
    return {
        "kind": "news2",
        "patient_id": patient_id,
        "reason": _news2_reason(score),
        "news2": news2,
    }


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


routes = [Route("/care/ward", ward_tasks, methods=["GET"])]
