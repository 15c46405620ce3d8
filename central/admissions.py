"""Patient movement (admit, transfer, discharge) and which bed stay owns device data.

``patients.bed_id`` says where a patient is now, and a trigger of migration 0006
keeps one ``bed_stays`` row per period in a bed. Bed and ward assignments cover
whoever is in the bed now, so a transfer moves the nurse's access with the patient.

An administrator or charge nurse may move any patient. A nurse or physician may
move only a patient they may read (see ``central.consent``). A nurse or
physician may admit a new patient into a bed their assignment covers. Readmitting a
known patient needs the same rights as a transfer, so a bed assignment cannot be
used to open an old record.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError, patient_id_of
from central.audit import Actor
from central.auth import (
    ROLE_ADMIN,
    ROLE_CHARGE_NURSE,
    ROLE_NURSE,
    ROLE_PHYSICIAN,
    Principal,
    require_user,
)
from central.consent import (
    CURRENT_ASSIGNMENT,
    Executor,
    RoleRequired,
    audit_refusal,
    authorize_read,
)
from central.json_body import decode_body
from central.services import Services, services_of
from protocol.messages import DeviceMessage

logger = logging.getLogger(__name__)

BED_MANAGER_ROLES = frozenset({ROLE_ADMIN, ROLE_CHARGE_NURSE})
CLINICAL_ROLES = frozenset({ROLE_NURSE, ROLE_PHYSICIAN})
MOVEMENT_ROLES = BED_MANAGER_ROLES | CLINICAL_ROLES
IDENTIFIER = r"^[A-Za-z0-9._:-]{1,64}$"

# The same bounds as the device_clock_suspect flag in central.storage: a message
# stamped outside them is attributed by central's receive time instead.
MAX_CLOCK_AHEAD = timedelta(minutes=5)
EARLIEST_PLAUSIBLE = datetime(2020, 1, 1, tzinfo=UTC)


class AdmitRequest(msgspec.Struct, forbid_unknown_fields=True):
    patient_id: Annotated[str, msgspec.Meta(pattern=IDENTIFIER)]
    bed_id: Annotated[str, msgspec.Meta(pattern=IDENTIFIER)]
    display_name: Annotated[str, msgspec.Meta(min_length=1, max_length=200)] | None = (
        None
    )


class TransferRequest(msgspec.Struct, forbid_unknown_fields=True):
    bed_id: Annotated[str, msgspec.Meta(pattern=IDENTIFIER)]


def attribution_time(message: DeviceMessage, received_at: datetime) -> datetime:
    """Return the time that decides which bed stay a message belongs to."""
    sent_at = message.sent_at
    if sent_at > received_at + MAX_CLOCK_AHEAD or sent_at < EARLIEST_PLAUSIBLE:
        return received_at
    return sent_at


async def attribute_messages(
    connection: asyncpg.Connection,
    bed_id: str | None,
    messages: Sequence[DeviceMessage],
) -> dict[int, str | None]:
    """Map each message's seq to the patient whose stay in ``bed_id`` covers it.

    A message from a bed with no stay at its time (the bed was empty, or the device
    is in no bed) maps to None and is stored without a patient.

    NOTE: a transfer's stays change when its transaction commits but carry its start
    time, so a batch stored during those milliseconds may give a message stamped
    inside them to the previous stay.
    """
    if bed_id is None or not messages:
        return {message.seq: None for message in messages}
    received_at = datetime.now(UTC)
    times = {
        message.seq: attribution_time(message, received_at) for message in messages
    }
    stays = await connection.fetch(
        """
        SELECT patient_id, started_at, ended_at FROM bed_stays
        WHERE bed_id = $1 AND (ended_at IS NULL OR ended_at > $2)
        ORDER BY started_at DESC
        """,
        bed_id,
        min(times.values()),
    )
    owners: dict[int, str | None] = {}
    for seq, at in times.items():
        owners[seq] = next(
            (
                stay["patient_id"]
                for stay in stays
                if stay["started_at"] <= at
                and (stay["ended_at"] is None or at < stay["ended_at"])
            ),
            None,
        )
    return owners


def _patient_body(row: asyncpg.Record) -> dict[str, object]:
    return {
        "id": row["id"],
        "display_name": row["display_name"],
        "bed_id": row["bed_id"],
        "admitted_at": row["admitted_at"].isoformat(),
        "discharged_at": None
        if row["discharged_at"] is None
        else row["discharged_at"].isoformat(),
    }


async def authorize_movement(
    services: Services, principal: Principal, patient_id: str, action: str
) -> None:
    """Raise a 403, after auditing it, unless the caller may move this patient."""
    if any(role in principal.roles for role in BED_MANAGER_ROLES):
        return
    if not any(role in principal.roles for role in CLINICAL_ROLES):
        reason = f"needs one of the roles {sorted(MOVEMENT_ROLES)}"
        await audit_refusal(services, principal, action, patient_id, reason)
        raise RoleRequired(action, MOVEMENT_ROLES)
    await authorize_read(services, principal, patient_id, action)


async def _bed_is_covered(executor: Executor, user_id: int, bed_id: str) -> bool:
    return bool(
        await executor.fetchval(
            f"""
            SELECT EXISTS (
                SELECT 1 FROM assignments a JOIN beds b ON b.id = $2
                WHERE a.user_id = $1 AND {CURRENT_ASSIGNMENT}
                  AND (a.bed_id = b.id OR a.ward_id = b.ward_id)
            )
            """,
            user_id,
            bed_id,
        )
    )


async def _require_free_bed(connection: asyncpg.Connection, bed_id: str) -> None:
    # Locking the bed row serialises admissions and transfers into the same bed.
    found = await connection.fetchval(
        "SELECT id FROM beds WHERE id = $1 FOR UPDATE", bed_id
    )
    if found is None:
        raise ApiError(404, f"bed {bed_id} not found")
    occupied = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM patients WHERE bed_id = $1)", bed_id
    )
    if occupied:
        raise ApiError(
            409, f"bed {bed_id} is occupied; transfer or discharge its patient first"
        )


async def admit(request: Request) -> JSONResponse:
    """Admit a new or discharged patient to a free bed.
    ---
    summary: Admit a new or discharged patient to a free bed
    tags: [admissions]
    security: [{bearerAuth: []}]
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/Admission"}
    responses:
      "201": {description: The admitted patient}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
      "409": {$ref: "#/components/responses/Conflict"}
    """
    principal = await require_user(request)
    services = services_of(request)
    action = "patient.admit"
    if not any(role in principal.roles for role in MOVEMENT_ROLES):
        reason = f"needs one of the roles {sorted(MOVEMENT_ROLES)}"
        await audit_refusal(services, principal, action, None, reason)
        raise RoleRequired(action, MOVEMENT_ROLES)
    body = await decode_body(
        request,
        AdmitRequest,
        '{"patient_id": "P-0002", "bed_id": "bed-2", "display_name": "..."}',
    )
    existing = await services.pool.fetchrow(
        "SELECT id, bed_id FROM patients WHERE id = $1", body.patient_id
    )
    if existing is not None:
        await authorize_movement(services, principal, body.patient_id, action)
    elif not any(role in principal.roles for role in BED_MANAGER_ROLES):
        if not await _bed_is_covered(services.pool, principal.user_id, body.bed_id):
            reason = f"no current assignment to bed {body.bed_id} or its ward"
            await audit_refusal(services, principal, action, body.patient_id, reason)
            raise ApiError(
                403,
                f"you may admit only into a bed your assignment covers, and bed "
                f"{body.bed_id} is not one; ask the charge nurse",
            )
    if existing is None and body.display_name is None:
        raise ApiError(400, "display_name: required to admit a new patient")
    row = await _admit(services, principal, body, existing is None)
    return JSONResponse(_patient_body(row), status_code=201)


async def _admit(
    services: Services, principal: Principal, body: AdmitRequest, new: bool
) -> asyncpg.Record:
    async with services.pool.acquire() as connection, connection.transaction():
        await _require_free_bed(connection, body.bed_id)
        if new:
            row = await _insert_patient(connection, body)
        else:
            row = await connection.fetchrow(
                """
                UPDATE patients
                SET bed_id = $2, admitted_at = now(), discharged_at = NULL
                WHERE id = $1 AND bed_id IS NULL
                RETURNING id, display_name, bed_id, admitted_at, discharged_at
                """,
                body.patient_id,
                body.bed_id,
            )
            if row is None:
                raise ApiError(
                    409,
                    f"patient {body.patient_id} is already admitted; transfer them "
                    "instead",
                )
        await services.audit.record(
            connection,
            Actor.user(principal.user_id),
            "patient.admit",
            patient_id=body.patient_id,
            detail={"bed_id": body.bed_id, "new_patient": new},
        )
    logger.info(
        "user %s admitted patient %s to bed %s",
        principal.user_id,
        body.patient_id,
        body.bed_id,
    )
    return row


async def _insert_patient(
    connection: asyncpg.Connection, body: AdmitRequest
) -> asyncpg.Record:
    try:
        return await connection.fetchrow(
            """
            INSERT INTO patients (id, display_name, bed_id) VALUES ($1, $2, $3)
            RETURNING id, display_name, bed_id, admitted_at, discharged_at
            """,
            body.patient_id,
            body.display_name,
            body.bed_id,
        )
    except asyncpg.UniqueViolationError:
        # Another request created the same patient id since it was looked up.
        raise ApiError(
            409, f"patient {body.patient_id} was created meanwhile; retry"
        ) from None


async def transfer(request: Request) -> JSONResponse:
    """Move an admitted patient to another free bed.
    ---
    summary: Move an admitted patient to another free bed
    tags: [admissions]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/PatientId"}
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/Transfer"}
    responses:
      "200": {description: The patient in the new bed}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
      "409": {$ref: "#/components/responses/Conflict"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    await authorize_movement(services, principal, patient_id, "patient.transfer")
    body = await decode_body(request, TransferRequest, '{"bed_id": "bed-2"}')
    async with services.pool.acquire() as connection, connection.transaction():
        current = await _lock_patient(connection, patient_id)
        if current["bed_id"] is None:
            raise ApiError(
                409,
                f"patient {patient_id} is not admitted; admit them with "
                "POST /admissions",
            )
        if current["bed_id"] == body.bed_id:
            raise ApiError(409, f"patient {patient_id} is already in bed {body.bed_id}")
        await _require_free_bed(connection, body.bed_id)
        row = await connection.fetchrow(
            """
            UPDATE patients SET bed_id = $2 WHERE id = $1
            RETURNING id, display_name, bed_id, admitted_at, discharged_at
            """,
            patient_id,
            body.bed_id,
        )
        await services.audit.record(
            connection,
            Actor.user(principal.user_id),
            "patient.transfer",
            patient_id=patient_id,
            detail={"from_bed_id": current["bed_id"], "to_bed_id": body.bed_id},
        )
    logger.info(
        "user %s transferred patient %s from bed %s to bed %s",
        principal.user_id,
        patient_id,
        current["bed_id"],
        body.bed_id,
    )
    return JSONResponse(_patient_body(row))


async def discharge(request: Request) -> JSONResponse:
    """Discharge an admitted patient and free their bed, keeping their record.
    ---
    summary: Discharge an admitted patient and free the bed
    tags: [admissions]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/PatientId"}
    responses:
      "200": {description: The discharged patient}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
      "409": {$ref: "#/components/responses/Conflict"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    await authorize_movement(services, principal, patient_id, "patient.discharge")
    async with services.pool.acquire() as connection, connection.transaction():
        current = await _lock_patient(connection, patient_id)
        if current["bed_id"] is None:
            raise ApiError(409, f"patient {patient_id} is not admitted")
        row = await connection.fetchrow(
            """
            UPDATE patients SET bed_id = NULL, discharged_at = now() WHERE id = $1
            RETURNING id, display_name, bed_id, admitted_at, discharged_at
            """,
            patient_id,
        )
        await services.audit.record(
            connection,
            Actor.user(principal.user_id),
            "patient.discharge",
            patient_id=patient_id,
            detail={"from_bed_id": current["bed_id"]},
        )
    logger.info(
        "user %s discharged patient %s from bed %s",
        principal.user_id,
        patient_id,
        current["bed_id"],
    )
    return JSONResponse(_patient_body(row))


async def _lock_patient(
    connection: asyncpg.Connection, patient_id: str
) -> asyncpg.Record:
    row = await connection.fetchrow(
        "SELECT id, bed_id FROM patients WHERE id = $1 FOR UPDATE", patient_id
    )
    if row is None:
        raise ApiError(404, f"patient {patient_id} not found")
    return row


routes = [
    Route("/admissions", admit, methods=["POST"]),
    Route("/patients/{patient_id}/transfer", transfer, methods=["POST"]),
    Route("/patients/{patient_id}/discharge", discharge, methods=["POST"]),
]
