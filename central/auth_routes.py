"""REST routes for logging in (POST /auth/login) and the caller's profile (/auth/me)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated

import msgspec
from asyncpg import Record
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError
from central.audit import Actor
from central.auth import (
    hash_secret,
    issue_token,
    needs_rehash,
    require_user,
    verify_secret_async,
)
from central.break_glass import current_grants
from central.consent import current_assignments
from central.services import Services, services_of
from central.users import USERNAME_PATTERN

logger = logging.getLogger(__name__)

MAX_LOGIN_BODY_BYTES = 4096


class LoginRequest(msgspec.Struct, forbid_unknown_fields=True):
    username: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    password: Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


async def _read_login(request: Request) -> LoginRequest:
    body = await request.body()
    if len(body) > MAX_LOGIN_BODY_BYTES:
        raise ApiError(413, f"login body is larger than {MAX_LOGIN_BODY_BYTES} bytes")
    try:
        return msgspec.json.decode(body, type=LoginRequest)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"invalid login request: {exc}") from None
    except msgspec.DecodeError:
        raise ApiError(
            400, 'login body must be JSON: {"username": "...", "password": "..."}'
        ) from None


async def login(request: Request) -> JSONResponse:
    """Exchange a username and password for a bearer token.
    ---
    summary: Log in and receive a bearer token
    tags: [auth]
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/Login"}
    responses:
      "200": {description: "access_token, token_type and expires_in"}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "413": {$ref: "#/components/responses/BadRequest"}
    """
    services = services_of(request)
    credentials = await _read_login(request)
    row = None
    # A name that breaks the username rule cannot exist, and text such as U+0000
    # would make PostgreSQL fail, so it is rejected like any unknown user.
    if USERNAME_PATTERN.match(credentials.username):
        row = await services.pool.fetchrow(
            """
            SELECT id, password_hash FROM users
            WHERE username = $1 AND disabled_at IS NULL
            """,
            credentials.username,
        )
    stored_hash = None if row is None else row["password_hash"]
    if not await verify_secret_async(stored_hash, credentials.password):
        await _refuse_login(services, credentials.username, row is None)
        raise ApiError(401, "invalid username or password")
    if needs_rehash(stored_hash):
        # The hashing parameters changed since this hash was made; upgrade it now
        # while the plain password is at hand.
        new_hash = await asyncio.to_thread(hash_secret, credentials.password)
        await services.pool.execute(
            "UPDATE users SET password_hash = $2 WHERE id = $1", row["id"], new_hash
        )
    ttl_s = services.settings.token_ttl_s
    token = issue_token(services.settings.jwt_secret, row["id"], ttl_s)
    await services.audit.record(services.pool, Actor.user(row["id"]), "login")
    logger.info("user %s logged in", row["id"])
    return JSONResponse(
        {"access_token": token, "token_type": "bearer", "expires_in": ttl_s}
    )


async def _refuse_login(services: Services, username: str, unknown: bool) -> None:
    services.counters.increment("auth.login_refused")
    reason = "unknown user" if unknown else "wrong password"
    claimed: str | None = username
    if not USERNAME_PATTERN.match(username):
        # Only a valid name goes into the audit row; PostgreSQL rejects U+0000.
        reason, claimed = "malformed username", None
    logger.warning("rejected login for username %r: %s", username, reason)
    await services.audit.record(
        services.pool,
        Actor.anonymous(claimed),
        "login",
        outcome="refused",
        detail={"reason": reason},
    )


async def me(request: Request) -> JSONResponse:
    """Return the caller's profile, current assignments and break-the-glass grants.
    ---
    summary: The caller's profile, roles, assignments and break-the-glass grants
    tags: [auth]
    security: [{bearerAuth: []}]
    responses:
      "200": {description: The profile}
      "401": {$ref: "#/components/responses/Unauthorized"}
    """
    principal = await require_user(request)
    services = services_of(request)
    assignments = await current_assignments(services.pool, principal.user_id)
    grants = await current_grants(services.pool, principal.user_id)
    return JSONResponse(
        {
            "id": principal.user_id,
            "username": principal.username,
            "display_name": principal.display_name,
            "roles": list(principal.roles),
            "assignments": [_assignment(row) for row in assignments],
            "break_the_glass": [
                {
                    "id": row["id"],
                    "patient_id": row["patient_id"],
                    "reason": row["reason"],
                    "starts_at": row["starts_at"].isoformat(),
                    "expires_at": row["expires_at"].isoformat(),
                }
                for row in grants
            ],
        }
    )


def _assignment(row: Record) -> dict[str, object]:
    # bed_id is the assigned bed, or for a patient assignment the patient's bed now.
    return {
        "id": row["id"],
        "scope": row["scope"],
        "patient_id": row["patient_id"],
        "bed_id": row["bed_id"] or row["patient_bed_id"],
        "ward_id": row["ward_id"],
        "patient_ids": list(row["patient_ids"]),
        "starts_at": row["starts_at"].isoformat(),
        "ends_at": None if row["ends_at"] is None else row["ends_at"].isoformat(),
    }


routes = [
    Route("/auth/login", login, methods=["POST"]),
    Route("/auth/me", me, methods=["GET"]),
]
