"""Break-the-glass: emergency access to a patient's record without an assignment.

A clinician states a reason and gets a grant that lasts ``AURA_BREAK_GLASS_S``
(default one hour). The grant overrides the patient's restrictions. Opening it, every
read under it (see ``central.consent.authorize_read``) and its review are audited,
and administrators list the grants to review them.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Annotated

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError, parse_int, patient_id_of
from central.audit import Actor
from central.auth import (
    ROLE_ADMIN,
    ROLE_CHARGE_NURSE,
    ROLE_NURSE,
    ROLE_PHYSICIAN,
    require_user,
)
from central.consent import Executor, require_role
from central.json_body import decode_body
from central.services import services_of

logger = logging.getLogger(__name__)

CLINICAL_ROLES = frozenset({ROLE_NURSE, ROLE_CHARGE_NURSE, ROLE_PHYSICIAN})
MAX_REASON_CHARS = 1000
MAX_LISTED_GRANTS = 500


class OpenRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Annotated[str, msgspec.Meta(max_length=MAX_REASON_CHARS)]


class ReviewRequest(msgspec.Struct, forbid_unknown_fields=True):
    note: Annotated[str, msgspec.Meta(max_length=MAX_REASON_CHARS)] = ""


def _grant(row: asyncpg.Record) -> dict[str, object]:
    body = dict(row)
    for key in ("starts_at", "expires_at", "reviewed_at"):
        if body.get(key) is not None:
            body[key] = body[key].isoformat()
    return body


async def open_grant(request: Request) -> JSONResponse:
    """Grant the caller time-limited access to one patient for a stated reason.
    ---
    summary: Open time-limited access to a patient for a stated reason
    tags: [break-the-glass]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/PatientId"}
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/BreakTheGlass"}
    responses:
      "201": {description: The grant with its expiry}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    await require_role(
        services, principal, CLINICAL_ROLES, "break_the_glass.open", patient_id
    )
    body = await decode_body(
        request, OpenRequest, '{"reason": "cardiac arrest call, covering nurse"}'
    )
    reason = body.reason.strip()
    if not reason:
        raise ApiError(400, "reason: must state why the record is opened")
    duration = timedelta(seconds=services.settings.break_glass_s)
    async with services.pool.acquire() as connection, connection.transaction():
        exists = await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM patients WHERE id = $1)", patient_id
        )
        if not exists:
            raise ApiError(404, f"patient {patient_id} not found")
        row = await connection.fetchrow(
            """
            INSERT INTO break_glass_grants (user_id, patient_id, reason, expires_at)
            VALUES ($1, $2, $3, now() + $4::interval)
            RETURNING id, user_id, patient_id, reason, starts_at, expires_at
            """,
            principal.user_id,
            patient_id,
            reason,
            duration,
        )
        await services.audit.record(
            connection,
            Actor.user(principal.user_id),
            "break_the_glass.open",
            patient_id=patient_id,
            detail={
                "grant_id": row["id"],
                "reason": reason,
                "expires_at": row["expires_at"].isoformat(),
            },
        )
    services.counters.increment("consent.break_the_glass_opened")
    # A person should review every emergency access, so this is a warning.
    logger.warning(
        "user %s opened patient %s by break-the-glass (grant %s) until %s",
        principal.user_id,
        patient_id,
        row["id"],
        row["expires_at"].isoformat(),
    )
    return JSONResponse(_grant(row), status_code=201)


async def list_grants(request: Request) -> JSONResponse:
    """List break-the-glass grants, newest first, with how often each was used.
    ---
    summary: List break-the-glass grants, newest first
    tags: [break-the-glass]
    security: [{bearerAuth: []}]
    parameters:
      - name: unreviewed
        in: query
        schema: {type: boolean, default: false}
      - name: limit
        in: query
        schema: {type: integer, minimum: 1, maximum: 500, default: 100}
    responses:
      "200": {description: Grants with how often each was used}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
    """
    principal = await require_user(request)
    services = services_of(request)
    await require_role(services, principal, {ROLE_ADMIN}, "break_the_glass.list")
    unreviewed_only = request.query_params.get("unreviewed", "false")
    if unreviewed_only not in ("true", "false"):
        raise ApiError(
            400, f"unreviewed: expected true or false, got {unreviewed_only!r}"
        )
    limit = parse_int(
        "limit", request.query_params.get("limit"), 100, 1, MAX_LISTED_GRANTS
    )
    rows = await _grants(services.pool, unreviewed_only == "true", limit)
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        "break_the_glass.list",
        detail={"grant_ids": [row["id"] for row in rows]},
    )
    return JSONResponse({"grants": [_grant(row) for row in rows]})


async def _grants(
    executor: Executor, unreviewed_only: bool, limit: int
) -> list[asyncpg.Record]:
    return await executor.fetch(
        """
        SELECT g.id, g.user_id, u.username, g.patient_id, g.reason, g.starts_at,
               g.expires_at, g.reviewed_at, g.reviewed_by, g.review_note,
               (SELECT count(*) FROM audit_log l
                WHERE l.action = 'break_the_glass.read' AND l.patient_id = g.patient_id
                  AND l.actor_id = g.user_id::text
                  AND (l.detail ->> 'grant_id')::bigint = g.id) AS reads
        FROM break_glass_grants g JOIN users u ON u.id = g.user_id
        WHERE NOT $1 OR g.reviewed_at IS NULL
        ORDER BY g.starts_at DESC, g.id DESC
        LIMIT $2
        """,
        unreviewed_only,
        limit,
    )


async def review_grant(request: Request) -> JSONResponse:
    """Mark a grant as reviewed by the calling administrator, with an optional note.
    ---
    summary: Mark a grant as reviewed
    tags: [break-the-glass]
    security: [{bearerAuth: []}]
    parameters:
      - name: grant_id
        in: path
        required: true
        schema: {type: integer, minimum: 1}
        example: 1
    requestBody:
      required: false
      content:
        application/json:
          schema: {$ref: "#/components/schemas/GrantReview"}
    responses:
      "200": {description: The reviewed grant}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
      "409": {$ref: "#/components/responses/Conflict"}
    """
    principal = await require_user(request)
    services = services_of(request)
    await require_role(services, principal, {ROLE_ADMIN}, "break_the_glass.review")
    grant_id = parse_int("grant_id", request.path_params["grant_id"], 0, 1, 2**62)
    body = ReviewRequest()
    if await request.body():
        body = await decode_body(request, ReviewRequest, '{"note": "justified"}')
    async with services.pool.acquire() as connection, connection.transaction():
        row = await connection.fetchrow(
            """
            UPDATE break_glass_grants
            SET reviewed_at = now(), reviewed_by = $2, review_note = $3
            WHERE id = $1 AND reviewed_at IS NULL
            RETURNING id, user_id, patient_id, reason, starts_at, expires_at,
                      reviewed_at, reviewed_by, review_note
            """,
            grant_id,
            principal.user_id,
            body.note.strip() or None,
        )
        if row is None:
            raise ApiError(
                404, f"no unreviewed break-the-glass grant with id {grant_id}"
            )
        await services.audit.record(
            connection,
            Actor.user(principal.user_id),
            "break_the_glass.review",
            patient_id=row["patient_id"],
            detail={"grant_id": grant_id, "note": row["review_note"]},
        )
    return JSONResponse(_grant(row))


async def current_grants(executor: Executor, user_id: int) -> list[asyncpg.Record]:
    """Return the user's break-the-glass grants that have not expired yet."""
    return await executor.fetch(
        """
        SELECT id, patient_id, reason, starts_at, expires_at FROM break_glass_grants
        WHERE user_id = $1 AND starts_at <= now() AND now() < expires_at
        ORDER BY expires_at
        """,
        user_id,
    )


routes = [
    Route("/patients/{patient_id}/break-the-glass", open_grant, methods=["POST"]),
    Route("/audit/break-the-glass", list_grants, methods=["GET"]),
    Route("/audit/break-the-glass/{grant_id}/review", review_grant, methods=["POST"]),
]
