"""Passwords, access tokens and authentication of dashboard requests.

Passwords and device secrets are hashed with Argon2id (argon2-cffi defaults, RFC 9106
low-memory profile). Access tokens are JWTs signed with HS256 only: the algorithm,
issuer and audience are pinned, and ``exp``, ``iat`` and ``sub`` are required, so
``alg: none``, algorithm swaps and tokens for other services are rejected.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from functools import lru_cache

import argon2
import asyncpg
import jwt
from starlette.requests import HTTPConnection

from central.api import ApiError
from central.audit import Actor
from central.services import services_of

logger = logging.getLogger(__name__)

TOKEN_ALGORITHM = "HS256"
TOKEN_ISSUER = "aura-central"
TOKEN_AUDIENCE = "aura-dashboard"
CLOCK_LEEWAY_S = 30
ROLE_ADMIN = "admin"
ROLE_NURSE = "nurse"
# Biomedical engineers manage the device registry and read no patient data.
ROLE_BIOMED = "biomed"

_hasher = argon2.PasswordHasher()


class AuthError(Exception):
    """Failed authentication; ``problem`` describes the cause in plain words."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


@dataclass(frozen=True)
class Principal:
    """An authenticated dashboard user, loaded fresh from the database."""

    user_id: int
    username: str
    display_name: str
    roles: tuple[str, ...]

    @property
    def is_admin(self) -> bool:
        return ROLE_ADMIN in self.roles


def hash_secret(secret: str) -> str:
    """Hash a password or device secret with Argon2id (CPU-heavy: about 50 ms)."""
    return _hasher.hash(secret)


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return _hasher.hash("not a real password")


def verify_secret(secret_hash: str | None, secret: str) -> bool:
    """Return True when ``secret`` matches ``secret_hash``.

    With no hash (unknown user or device) a dummy hash is checked anyway, so the
    response time does not reveal which names exist.
    """
    try:
        matched = _hasher.verify(secret_hash or _dummy_hash(), secret)
    except argon2.exceptions.VerificationError:
        return False
    except argon2.exceptions.InvalidHashError:
        logger.error("stored secret hash is not a valid Argon2 hash; reset the secret")
        return False
    return matched and secret_hash is not None


async def verify_secret_async(secret_hash: str | None, secret: str) -> bool:
    """Run ``verify_secret`` in a worker thread so the event loop keeps serving."""
    return await asyncio.to_thread(verify_secret, secret_hash, secret)


def needs_rehash(secret_hash: str) -> bool:
    return _hasher.check_needs_rehash(secret_hash)


def issue_token(secret: str, user_id: int, ttl_s: int, now: float | None = None) -> str:
    """Sign an access token for ``user_id`` that expires after ``ttl_s`` seconds."""
    issued_at = int(time.time() if now is None else now)
    claims = {
        "sub": str(user_id),
        "iss": TOKEN_ISSUER,
        "aud": TOKEN_AUDIENCE,
        "iat": issued_at,
        "exp": issued_at + ttl_s,
    }
    return jwt.encode(claims, secret, algorithm=TOKEN_ALGORITHM)


def decode_token(secret: str, token: str) -> int:
    """Verify ``token`` and return its user id; raise AuthError naming the problem."""
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[TOKEN_ALGORITHM],
            issuer=TOKEN_ISSUER,
            audience=TOKEN_AUDIENCE,
            leeway=CLOCK_LEEWAY_S,
            options={"require": ["exp", "iat", "sub", "iss", "aud"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(_describe_token_error(token, exc)) from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject.isdigit():
        raise AuthError(f"token subject {subject!r} is not a user id")
    return int(subject)


def _describe_token_error(token: str, exc: jwt.PyJWTError) -> str:
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "token has expired; log in again"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return (
            "token is issued in the future (iat is more than "
            f"{CLOCK_LEEWAY_S} s ahead); check the clock of the issuer"
        )
    if isinstance(exc, jwt.InvalidAlgorithmError):
        algorithm = _header_algorithm(token)
        return (
            f"token algorithm {algorithm!r} is not accepted; only {TOKEN_ALGORITHM} is"
        )
    if isinstance(exc, jwt.InvalidSignatureError):
        return "token signature is invalid; it was not issued by this service"
    if isinstance(exc, jwt.InvalidIssuerError):
        return f"token issuer is not {TOKEN_ISSUER!r}"
    if isinstance(exc, jwt.InvalidAudienceError):
        return f"token audience is not {TOKEN_AUDIENCE!r}"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"token is missing the {exc.claim!r} claim"
    return "token is not a valid JWT"


def _header_algorithm(token: str) -> str:
    try:
        return str(jwt.get_unverified_header(token).get("alg"))
    except jwt.PyJWTError:
        return "unknown"


def bearer_token(authorization: str | None) -> str | None:
    """Return the token of an ``Authorization: Bearer`` header, or None."""
    if not authorization:
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


async def load_principal(
    executor: asyncpg.Pool | asyncpg.Connection, user_id: int
) -> Principal | None:
    """Load an enabled user by id, or None."""
    row = await executor.fetchrow(
        """
        SELECT id, username, display_name, roles FROM users
        WHERE id = $1 AND disabled_at IS NULL
        """,
        user_id,
    )
    if row is None:
        return None
    return Principal(
        row["id"], row["username"], row["display_name"], tuple(row["roles"])
    )


async def authenticate_token(
    executor: asyncpg.Pool | asyncpg.Connection, secret: str, token: str | None
) -> Principal:
    """Return the user a token belongs to; raise AuthError if it is not valid."""
    if token is None:
        raise AuthError("missing bearer token; log in at POST /auth/login")
    user_id = decode_token(secret, token)
    principal = await load_principal(executor, user_id)
    if principal is None:
        raise AuthError(f"token subject {user_id} is not an active user")
    return principal


async def require_user(request: HTTPConnection) -> Principal:
    """Authenticate a REST request by its bearer token; raise a 401 ApiError if not.

    A refusal is audited with the path and the problem, never with the token.
    """
    services = services_of(request)
    token = bearer_token(request.headers.get("authorization"))
    try:
        return await authenticate_token(
            services.pool, services.settings.jwt_secret, token
        )
    except AuthError as exc:
        services.counters.increment("auth.refused")
        logger.warning(
            "rejected %s %s: %s",
            request.scope.get("method", "WS"),
            request.url.path,
            exc.problem,
        )
        await services.audit.record(
            services.pool,
            Actor.anonymous(),
            "access",
            outcome="refused",
            detail={"path": request.url.path, "problem": exc.problem},
        )
        raise ApiError(401, exc.problem) from None
