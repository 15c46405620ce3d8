"""REST reads of patient data; each one checks consent and is audited."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError, parse_int, parse_time, patient_id_of
from central.audit import Actor
from central.auth import require_user
from central.consent import authorize_read, readable_patients
from central.history import load_history
from central.services import services_of
from protocol.codes import BY_REFERENCE_ID

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = timedelta(hours=1)
MAX_VITALS_LIMIT = 10_000
DEFAULT_VITALS_LIMIT = 1_000


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time_window(request: Request) -> tuple[datetime, datetime]:
    query = request.query_params
    until = parse_time("until", query.get("until"), datetime.now(UTC))
    since = parse_time("since", query.get("since"), until - DEFAULT_WINDOW)
    if since >= until:
        raise ApiError(
            400,
            f"since ({since.isoformat()}) must be before until ({until.isoformat()})",
        )
    return since, until


async def list_patients(request: Request) -> JSONResponse:
    """List only the patients the caller may read.
    ---
    summary: Patients the caller may read
    tags: [patients]
    security: [{bearerAuth: []}]
    responses:
      "200": {description: The patients}
      "401": {$ref: "#/components/responses/Unauthorized"}
    """
    principal = await require_user(request)
    services = services_of(request)
    rows = await readable_patients(services.pool, principal)
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        "patients.list",
        detail={"patient_ids": [row["id"] for row in rows]},
    )
    return JSONResponse({"patients": [dict(row) for row in rows]})


async def get_patient(request: Request) -> JSONResponse:
    """Return one patient with bed, ward, devices in the bed and latest numerics.
    ---
    summary: One patient with bed, devices and latest vitals
    tags: [patients]
    security: [{bearerAuth: []}]
    parameters: [{$ref: "#/components/parameters/PatientId"}]
    responses:
      "200": {description: The patient}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    await authorize_read(services, principal, patient_id, "patient.read")
    body = await _load_patient_detail(services.pool, patient_id)
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        "patient.read",
        patient_id=patient_id,
    )
    return JSONResponse(body)


async def _load_patient_detail(pool: asyncpg.Pool, patient_id: str) -> dict:
    patient = await pool.fetchrow(
        """
        SELECT p.id, p.display_name, p.bed_id, p.admitted_at,
               b.label AS bed_label, w.name AS ward
        FROM patients p
        LEFT JOIN beds b ON b.id = p.bed_id
        LEFT JOIN wards w ON w.id = b.ward_id
        WHERE p.id = $1
        """,
        patient_id,
    )
    if patient is None:
        raise ApiError(404, f"patient {patient_id} not found")
    devices = await pool.fetch(
        """
        SELECT id, model, firmware, last_seen_at FROM devices
        WHERE bed_id = $1 AND retired_at IS NULL ORDER BY id
        """,
        patient["bed_id"],
    )
    latest = await pool.fetch(
        """
        SELECT DISTINCT ON (code) code, value, unit, measured_at, device_id
        FROM vitals WHERE patient_id = $1
        ORDER BY code, measured_at DESC
        """,
        patient_id,
    )
    body = dict(patient)
    body["admitted_at"] = _iso(patient["admitted_at"])
    body["devices"] = [
        {**dict(row), "last_seen_at": _iso(row["last_seen_at"])} for row in devices
    ]
    body["latest_vitals"] = [_vital(row) for row in latest]
    return body


def _vital(row: asyncpg.Record) -> dict[str, object]:
    return {
        "code": row["code"],
        "value": row["value"],
        "unit": row["unit"],
        "measured_at": _iso(row["measured_at"]),
        "device_id": row["device_id"],
    }


async def get_vitals(request: Request) -> JSONResponse:
    """Return numerics in [since, until), oldest first, optionally for one code.
    ---
    summary: A patient's numerics in a time window
    tags: [patients]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/PatientId"}
      - {$ref: "#/components/parameters/Since"}
      - {$ref: "#/components/parameters/Until"}
      - {name: code, in: query, schema: {type: string},
         description: "IEEE 11073 reference id such as MDC_ECG_HEART_RATE"}
      - {name: limit, in: query, schema: {type: integer, minimum: 1, maximum: 10000}}
    responses:
      "200": {description: The measurements}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    await authorize_read(services, principal, patient_id, "vitals.read")
    since, until = _time_window(request)
    code = request.query_params.get("code")
    if code is not None and code not in BY_REFERENCE_ID:
        known = ", ".join(sorted(BY_REFERENCE_ID))
        raise ApiError(400, f"code: unknown vital-sign code {code!r}; known: {known}")
    limit = parse_int(
        "limit",
        request.query_params.get("limit"),
        DEFAULT_VITALS_LIMIT,
        1,
        MAX_VITALS_LIMIT,
    )
    rows = await services.pool.fetch(
        """
        SELECT code, value, unit, measured_at, device_id FROM vitals
        WHERE patient_id = $1 AND measured_at >= $2 AND measured_at < $3
          AND ($4::text IS NULL OR code = $4)
        ORDER BY measured_at, device_id, seq, ordinal
        LIMIT $5
        """,
        patient_id,
        since,
        until,
        code,
        limit + 1,
    )
    truncated = len(rows) > limit
    rows = rows[:limit]
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        "vitals.read",
        patient_id=patient_id,
        detail={
            "since": since.isoformat(),
            "until": until.isoformat(),
            "code": code,
            "rows": len(rows),
        },
    )
    return JSONResponse(
        {
            "patient_id": patient_id,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "measurements": [_vital(row) for row in rows],
            "truncated": truncated,
        }
    )


async def get_history(request: Request) -> JSONResponse:
    """Return a page of per-minute heart-rate statistics and alarms.
    ---
    summary: A page of a patient's timeline
    tags: [patients]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/PatientId"}
      - {$ref: "#/components/parameters/Since"}
      - {$ref: "#/components/parameters/Until"}
      - {name: minutes, in: query, schema: {type: integer, minimum: 1, maximum: 1440}}
    responses:
      "200": {description: One page; next_since starts the next one}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    await authorize_read(services, principal, patient_id, "history.read")
    since, until = _time_window(request)
    page_minutes = parse_int(
        "minutes", request.query_params.get("minutes"), 60, 1, 1440
    )
    page = await load_history(services.pool, patient_id, since, until, page_minutes)
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        "history.read",
        patient_id=patient_id,
        detail={"since": since.isoformat(), "until": page["until"]},
    )
    return JSONResponse(page)


routes = [
    Route("/patients", list_patients, methods=["GET"]),
    Route("/patients/{patient_id}", get_patient, methods=["GET"]),
    Route("/patients/{patient_id}/vitals", get_vitals, methods=["GET"]),
    Route("/patients/{patient_id}/history", get_history, methods=["GET"]),
]
