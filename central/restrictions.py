"""A patient's limits on who may see their record, kept by administrators.

``allow`` lists the only users who may read the record (they still need an
assignment); ``deny`` lists users who may never read it. Either one overrides ward,
bed and patient assignments and the administrator role. Only break-the-glass
overrides them (see ``central.consent``).
"""

from __future__ import annotations

import logging
from typing import Annotated

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError, patient_id_of
from central.audit import Actor
from central.auth import ROLE_ADMIN, require_user
from central.consent import Executor, require_role
from central.json_body import decode_body
from central.services import services_of

logger = logging.getLogger(__name__)

MAX_RULES = 200
Usernames = Annotated[list[str], msgspec.Meta(max_length=MAX_RULES)]


class RestrictionsRequest(msgspec.Struct, forbid_unknown_fields=True):
    allow: Usernames = msgspec.field(default_factory=list)
    deny: Usernames = msgspec.field(default_factory=list)


async def _require_patient(executor: Executor, patient_id: str) -> None:
    if not await executor.fetchval(
        "SELECT EXISTS (SELECT 1 FROM patients WHERE id = $1)", patient_id
    ):
        raise ApiError(404, f"patient {patient_id} not found")


async def _rules(executor: Executor, patient_id: str) -> dict[str, list[str]]:
    rows = await executor.fetch(
        """
        SELECT r.effect, u.username FROM patient_access_rules r
        JOIN users u ON u.id = r.user_id
        WHERE r.patient_id = $1 ORDER BY u.username
        """,
        patient_id,
    )
    return {
        effect: [row["username"] for row in rows if row["effect"] == effect]
        for effect in ("allow", "deny")
    }


async def get_restrictions(request: Request) -> JSONResponse:
    """Return the patient's allow and deny lists.
    ---
    summary: Read a patient's allow and deny lists
    tags: [restrictions]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/PatientId"}
    responses:
      "200": {description: The allow and deny lists of usernames}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    await require_role(
        services, principal, {ROLE_ADMIN}, "restrictions.read", patient_id
    )
    await _require_patient(services.pool, patient_id)
    rules = await _rules(services.pool, patient_id)
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        "restrictions.read",
        patient_id=patient_id,
    )
    return JSONResponse({"patient_id": patient_id, **rules})


async def put_restrictions(request: Request) -> JSONResponse:
    """Replace the patient's allow and deny lists.
    ---
    summary: Replace a patient's allow and deny lists
    tags: [restrictions]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/PatientId"}
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/Restrictions"}
    responses:
      "200": {description: The stored lists}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    await require_role(
        services, principal, {ROLE_ADMIN}, "restrictions.update", patient_id
    )
    body = await decode_body(
        request, RestrictionsRequest, '{"allow": ["dr.lee"], "deny": ["nurse.ben"]}'
    )
    both = sorted(set(body.allow) & set(body.deny))
    if both:
        raise ApiError(400, f"users {both} are in both allow and deny; pick one")
    async with services.pool.acquire() as connection, connection.transaction():
        await _require_patient(connection, patient_id)
        user_ids = await _user_ids(connection, [*body.allow, *body.deny])
        await connection.execute(
            "DELETE FROM patient_access_rules WHERE patient_id = $1", patient_id
        )
        await connection.executemany(
            """
            INSERT INTO patient_access_rules (patient_id, user_id, effect, created_by)
            VALUES ($1, $2, $3, $4)
            """,
            [
                (patient_id, user_ids[name], effect, principal.user_id)
                for effect, names in (("allow", body.allow), ("deny", body.deny))
                for name in set(names)
            ],
        )
        rules = await _rules(connection, patient_id)
        await services.audit.record(
            connection,
            Actor.user(principal.user_id),
            "restrictions.update",
            patient_id=patient_id,
            detail=rules,
        )
    logger.info(
        "user %s set access restrictions of patient %s: %d allowed, %d denied",
        principal.user_id,
        patient_id,
        len(rules["allow"]),
        len(rules["deny"]),
    )
    return JSONResponse({"patient_id": patient_id, **rules})


async def _user_ids(
    connection: asyncpg.Connection, usernames: list[str]
) -> dict[str, int]:
    rows = await connection.fetch(
        "SELECT id, username FROM users WHERE username = ANY($1::text[])", usernames
    )
    found = {row["username"]: row["id"] for row in rows}
    unknown = sorted(set(usernames) - set(found))
    if unknown:
        raise ApiError(400, f"unknown users {unknown}; use existing usernames")
    return found


routes = [
    Route("/patients/{patient_id}/restrictions", get_restrictions, methods=["GET"]),
    Route("/patients/{patient_id}/restrictions", put_restrictions, methods=["PUT"]),
]
