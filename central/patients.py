"""REST reads of patient data; each one checks consent and is audited."""

from __future__ import annotations

import logging
from datetime import datetime

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError, patient_id_of
from central.audit import Actor
from central.auth import require_user
from central.consent import authorize_read, readable_patients
from central.services import services_of

logger = logging.getLogger(__name__)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


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


routes = [
    Route("/patients", list_patients, methods=["GET"]),
    Route("/patients/{patient_id}", get_patient, methods=["GET"]),
]
