"""Assignments: which clinician looks after which patients, and until when.

An assignment covers one patient (typically a physician's), one bed or one ward
(typically a nurse's shift), from ``starts_at`` until ``ends_at``. Bed and ward
assignments cover whoever is in the bed now. Administrators and charge nurses create
and end them, and every change is audited.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError, parse_int
from central.audit import Actor
from central.auth import (
    ROLE_ADMIN,
    ROLE_CHARGE_NURSE,
    ROLE_NURSE,
    ROLE_PHYSICIAN,
    require_user,
)
from central.consent import CURRENT_ASSIGNMENT, require_role
from central.json_body import decode_body
from central.services import services_of

logger = logging.getLogger(__name__)

MANAGER_ROLES = frozenset({ROLE_ADMIN, ROLE_CHARGE_NURSE})
ASSIGNABLE_ROLES = frozenset({ROLE_NURSE, ROLE_CHARGE_NURSE, ROLE_PHYSICIAN})
DEFAULT_DURATION = timedelta(hours=12)
# NOTE: a guessed bound. It keeps a typo from granting years of access, yet lets a
# physician follow a patient through a long stay. Longer ones need renewing.
MAX_DURATION = timedelta(days=30)
IDENTIFIER = r"^[A-Za-z0-9._:-]{1,64}$"
MAX_LISTED = 1000
# User ids are PostgreSQL bigint, and parse_int bounds them the same way.
MAX_DATABASE_ID = 2**62
EXAMPLE = (
    '{"username": "nurse.ana", "bed_id": "bed-1", "ends_at": "2030-01-01T19:00:00Z"}'
)

Identifier = Annotated[str, msgspec.Meta(pattern=IDENTIFIER)]


class CreateRequest(msgspec.Struct, forbid_unknown_fields=True):
    username: str | None = None
    user_id: Annotated[int, msgspec.Meta(ge=1, le=MAX_DATABASE_ID)] | None = None
    patient_id: Identifier | None = None
    bed_id: Identifier | None = None
    ward_id: Identifier | None = None
    starts_at: datetime | None = None
    ends_at: datetime | None = None


def _body(row: asyncpg.Record) -> dict[str, object]:
    body = dict(row)
    for key in ("starts_at", "ends_at"):
        if body.get(key) is not None:
            body[key] = body[key].isoformat()
    return body


def _window(request: CreateRequest, now: datetime) -> tuple[datetime, datetime]:
    for name in ("starts_at", "ends_at"):
        value = getattr(request, name)
        if value is not None and value.tzinfo is None:
            raise ApiError(400, f"{name}: time has no UTC offset; add Z or +00:00")
    starts_at = request.starts_at or now
    try:
        ends_at = request.ends_at or starts_at + DEFAULT_DURATION
    except OverflowError:
        raise ApiError(
            400, f"starts_at ({starts_at.isoformat()}) is too far in the future"
        ) from None
    if ends_at <= starts_at:
        raise ApiError(
            400,
            f"ends_at ({ends_at.isoformat()}) must be after starts_at "
            f"({starts_at.isoformat()})",
        )
    if ends_at <= now:
        raise ApiError(400, f"ends_at ({ends_at.isoformat()}) is already past")
    if ends_at - starts_at > MAX_DURATION:
        raise ApiError(
            400,
            f"an assignment may last at most {MAX_DURATION.days} days; "
            "create a new one when it ends",
        )
    return starts_at, ends_at


async def create_assignment(request: Request) -> JSONResponse:
    """Assign a clinician to a patient, a bed or a ward for a period.
    ---
    summary: Assign a clinician to a patient, bed or ward
    tags: [assignments]
    security: [{bearerAuth: []}]
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/NewAssignment"}
    responses:
      "201": {description: The new assignment}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    await require_role(services, principal, MANAGER_ROLES, "assignment.create")
    body = await decode_body(request, CreateRequest, EXAMPLE)
    scopes = [
        name for name in ("patient_id", "bed_id", "ward_id") if getattr(body, name)
    ]
    if len(scopes) != 1:
        raise ApiError(
            400,
            "give exactly one of patient_id, bed_id or ward_id; example: " + EXAMPLE,
        )
    if (body.username is None) == (body.user_id is None):
        raise ApiError(400, "give exactly one of username or user_id")
    starts_at, ends_at = _window(body, datetime.now(UTC))
    async with services.pool.acquire() as connection, connection.transaction():
        user = await connection.fetchrow(
            """
            SELECT id, username, roles FROM users
            WHERE (id = $1 OR username = $2) AND disabled_at IS NULL
            """,
            body.user_id,
            body.username,
        )
        if user is None:
            who = body.username if body.username is not None else body.user_id
            raise ApiError(404, f"no active user {who}")
        if not ASSIGNABLE_ROLES & set(user["roles"]):
            raise ApiError(
                400,
                f"user {user['username']} has none of the clinical roles "
                f"{sorted(ASSIGNABLE_ROLES)}",
            )
        await _require_target(connection, scopes[0], getattr(body, scopes[0]))
        row = await connection.fetchrow(
            """
            INSERT INTO assignments
                (user_id, patient_id, bed_id, ward_id, starts_at, ends_at, created_by)
            VALUES ($1, $2, $3, $4, $5, $6, $7)
            RETURNING id, user_id, patient_id, bed_id, ward_id, starts_at, ends_at
            """,
            user["id"],
            body.patient_id,
            body.bed_id,
            body.ward_id,
            starts_at,
            ends_at,
            principal.user_id,
        )
        await services.audit.record(
            connection,
            Actor.user(principal.user_id),
            "assignment.create",
            patient_id=body.patient_id,
            detail=_body(row),
        )
    logger.info(
        "user %s assigned user %s to %s %s until %s",
        principal.user_id,
        user["id"],
        scopes[0].removesuffix("_id"),
        getattr(body, scopes[0]),
        ends_at.isoformat(),
    )
    return JSONResponse(_body(row), status_code=201)


async def _require_target(
    connection: asyncpg.Connection, scope: str, target_id: str
) -> None:
    table = {"patient_id": "patients", "bed_id": "beds", "ward_id": "wards"}[scope]
    found = await connection.fetchval(
        f"SELECT EXISTS (SELECT 1 FROM {table} WHERE id = $1)", target_id
    )
    if not found:
        raise ApiError(404, f"{scope.removesuffix('_id')} {target_id} not found")


async def end_assignment(request: Request) -> JSONResponse:
    """End an assignment now, or cancel one that has not started yet.
    ---
    summary: End a current assignment or cancel a future one
    tags: [assignments]
    security: [{bearerAuth: []}]
    parameters:
      - name: assignment_id
        in: path
        required: true
        schema: {type: integer, minimum: 1}
        example: 1
    responses:
      "200": {description: The ended assignment}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    await require_role(services, principal, MANAGER_ROLES, "assignment.end")
    assignment_id = parse_int(
        "assignment_id", request.path_params["assignment_id"], 0, 1, 2**62
    )
    async with services.pool.acquire() as connection, connection.transaction():
        # The table requires ends_at > starts_at, so an assignment that has not
        # started yet gets a start just before now, and never becomes current.
        row = await connection.fetchrow(
            """
            UPDATE assignments
            SET ends_at = now(),
                starts_at = least(starts_at, now() - interval '1 microsecond'),
                ended_by = $2
            WHERE id = $1 AND (ends_at IS NULL OR ends_at > now())
            RETURNING id, user_id, patient_id, bed_id, ward_id, starts_at, ends_at
            """,
            assignment_id,
            principal.user_id,
        )
        if row is None:
            raise ApiError(
                404, f"no current or future assignment with id {assignment_id}"
            )
        await services.audit.record(
            connection,
            Actor.user(principal.user_id),
            "assignment.end",
            patient_id=row["patient_id"],
            detail=_body(row),
        )
    logger.info("user %s ended assignment %s", principal.user_id, assignment_id)
    return JSONResponse(_body(row))


async def list_assignments(request: Request) -> JSONResponse:
    """List current and future assignments, optionally of one user.
    ---
    summary: List current and future assignments
    tags: [assignments]
    security: [{bearerAuth: []}]
    parameters:
      - name: user_id
        in: query
        schema: {type: integer, minimum: 1}
        description: Only this user's assignments
    responses:
      "200": {description: Assignments ordered by start}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
    """
    principal = await require_user(request)
    services = services_of(request)
    await require_role(services, principal, MANAGER_ROLES, "assignment.list")
    user_id = request.query_params.get("user_id")
    user_filter = (
        None if user_id is None else parse_int("user_id", user_id, 0, 1, 2**62)
    )
    rows = await services.pool.fetch(
        f"""
        SELECT a.id, a.user_id, u.username, a.patient_id, a.bed_id, a.ward_id,
               a.starts_at, a.ends_at, ({CURRENT_ASSIGNMENT}) AS current
        FROM assignments a JOIN users u ON u.id = a.user_id
        WHERE (a.ends_at IS NULL OR a.ends_at > now())
          AND ($1::bigint IS NULL OR a.user_id = $1)
        ORDER BY a.starts_at, a.id
        LIMIT $2
        """,
        user_filter,
        MAX_LISTED,
    )
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        "assignment.list",
        detail={"user_id": user_filter, "rows": len(rows)},
    )
    return JSONResponse({"assignments": [_body(row) for row in rows]})


async def ensure_bed_assignment(
    executor: asyncpg.Pool | asyncpg.Connection,
    user_id: int,
    bed_id: str,
    duration: timedelta = DEFAULT_DURATION,
) -> int:
    """Give the user a bed assignment lasting ``duration`` from now and return its id.

    A current assignment of the user to the bed is extended, so running this
    again (as seeding does) keeps one row.
    """
    extended = await executor.fetchval(
        f"""
        UPDATE assignments a SET ends_at = now() + $3::interval
        WHERE a.id = (
            SELECT a.id FROM assignments a
            WHERE a.user_id = $1 AND a.bed_id = $2 AND {CURRENT_ASSIGNMENT}
            ORDER BY a.id LIMIT 1
        )
        RETURNING a.id
        """,
        user_id,
        bed_id,
        duration,
    )
    if extended is not None:
        return extended
    return await executor.fetchval(
        """
        INSERT INTO assignments (user_id, bed_id, ends_at)
        VALUES ($1, $2, now() + $3::interval)
        RETURNING id
        """,
        user_id,
        bed_id,
        duration,
    )


routes = [
    Route("/assignments", create_assignment, methods=["POST"]),
    Route("/assignments", list_assignments, methods=["GET"]),
    Route("/assignments/{assignment_id}/end", end_assignment, methods=["POST"]),
]
