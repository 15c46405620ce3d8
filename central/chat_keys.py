"""Chat key routes: publish one's public keys, fetch anyone's by key id.

Public keys are not secret, so any logged-in user may fetch any key. A key id always
names the same pair, because the id is a hash of both public keys. Private keys
never reach central (see ``docs/chat.md``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric import ec
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError
from central.audit import Actor
from central.auth import require_user
from central.json_body import decode_body
from central.services import services_of
from protocol.chat import P256_POINT_BYTES, PublicKeys, key_id

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 64 * 1024
KEY_ID_PATTERN = re.compile(r"^[0-9a-f]{32}$")


async def read_json_body(request: Request, kind: type[Any], description: str) -> Any:
    """Decode a chat body, which may carry envelopes for many recipients."""
    return await decode_body(
        request, kind, description=description, max_bytes=MAX_BODY_BYTES
    )


def _check_point(name: str, encoded: str) -> bytes:
    problem = f"{name}: expected an uncompressed P-256 point (65 bytes) in base64"
    try:
        raw = base64.b64decode(encoded, validate=True)
    except binascii.Error:
        raise ApiError(400, problem) from None
    if len(raw) != P256_POINT_BYTES:
        raise ApiError(400, problem)
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), raw)
    except ValueError:
        raise ApiError(400, f"{name}: the point is not on the P-256 curve") from None
    return raw


async def publish_keys(request: Request) -> JSONResponse:
    """Make a key pair the caller's current chat keys; supersede the previous pair.
    ---
    summary: Publish the caller's chat key pair
    tags: [chat]
    security: [{bearerAuth: []}]
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/PublicKeys"}
    responses:
      "200": {description: The key id}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "409": {$ref: "#/components/responses/Conflict"}
    """
    principal = await require_user(request)
    services = services_of(request)
    keys = await read_json_body(request, PublicKeys, "public keys")
    ecdh = _check_point("ecdh_public", keys.ecdh_public)
    signing = _check_point("signing_public", keys.signing_public)
    new_key_id = key_id(ecdh, signing)
    async with services.pool.acquire() as connection, connection.transaction():
        owner = await connection.fetchval(
            "SELECT user_id FROM chat_keys WHERE key_id = $1", new_key_id
        )
        if owner is not None and owner != principal.user_id:
            raise ApiError(409, f"key {new_key_id} belongs to another user")
        await connection.execute(
            """
            UPDATE chat_keys SET superseded_at = now()
            WHERE user_id = $1 AND superseded_at IS NULL AND key_id <> $2
            """,
            principal.user_id,
            new_key_id,
        )
        await connection.execute(
            """
            INSERT INTO chat_keys (key_id, user_id, ecdh_public, signing_public)
            VALUES ($1, $2, $3, $4)
            ON CONFLICT (key_id) DO UPDATE SET superseded_at = NULL
            """,
            new_key_id,
            principal.user_id,
            ecdh,
            signing,
        )
        await services.audit.record(
            connection,
            Actor.user(principal.user_id),
            "chat.keys.publish",
            detail={"key_id": new_key_id},
        )
    logger.info("user %s published chat key %s", principal.user_id, new_key_id)
    return JSONResponse({"key_id": new_key_id, "user_id": str(principal.user_id)})


def key_json(row: asyncpg.Record) -> dict[str, object]:
    return {
        "key_id": row["key_id"],
        "user_id": str(row["user_id"]),
        "ecdh_public": base64.b64encode(row["ecdh_public"]).decode("ascii"),
        "signing_public": base64.b64encode(row["signing_public"]).decode("ascii"),
        "created_at": row["created_at"].isoformat(),
        "superseded_at": None
        if row["superseded_at"] is None
        else row["superseded_at"].isoformat(),
    }


async def get_key(request: Request) -> JSONResponse:
    """Return one published key pair by id; public keys are not secret.
    ---
    summary: One published chat key pair
    tags: [chat]
    security: [{bearerAuth: []}]
    parameters:
      - name: key_id
        in: path
        required: true
        schema: {type: string}
    responses:
      "200": {description: The public keys}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    await require_user(request)
    services = services_of(request)
    new_key_id = request.path_params["key_id"]
    # A malformed id cannot exist, and U+0000 in it would fail the query.
    row = None
    if KEY_ID_PATTERN.match(new_key_id):
        row = await services.pool.fetchrow(
            "SELECT * FROM chat_keys WHERE key_id = $1", new_key_id
        )
    if row is None:
        raise ApiError(404, f"no chat key with id {new_key_id[:64]!r}")
    return JSONResponse(key_json(row))


routes = [
    Route("/chat/keys", publish_keys, methods=["PUT"]),
    Route("/chat/keys/{key_id}", get_key, methods=["GET"]),
]
