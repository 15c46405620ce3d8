"""User accounts and assignments (the consent records)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

import asyncpg

from central.auth import ROLE_ADMIN, ROLE_BIOMED, ROLE_NURSE, hash_secret

logger = logging.getLogger(__name__)

Executor = asyncpg.Pool | asyncpg.Connection
USERNAME_PATTERN = re.compile(r"^[a-z0-9._-]{1,64}$")
KNOWN_ROLES = frozenset({ROLE_ADMIN, ROLE_NURSE, "physician", ROLE_BIOMED})


# Login rejects empty passwords, so a shorter one would make an account nobody can
# use; 8 is the floor NIST SP 800-63B sets for passwords users choose.
MIN_PASSWORD_LENGTH = 8


def validate_user(username: str, roles: Sequence[str]) -> None:
    """Raise ValueError naming the bad value unless username and roles are valid."""
    if not USERNAME_PATTERN.match(username):
        raise ValueError(
            f"username {username!r} must be 1-64 characters of a-z 0-9 . _ -"
        )
    unknown = sorted(set(roles) - KNOWN_ROLES)
    if unknown:
        known = ", ".join(sorted(KNOWN_ROLES))
        raise ValueError(f"unknown roles {unknown}; known roles: {known}")


async def upsert_user(
    executor: Executor,
    username: str,
    display_name: str,
    password: str,
    roles: Sequence[str],
) -> int:
    """Create the user, or reset its name, password and roles; return its id."""
    validate_user(username, roles)
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(
            f"a password must have at least {MIN_PASSWORD_LENGTH} characters"
        )
    user_id = await executor.fetchval(
        """
        INSERT INTO users (username, display_name, password_hash, roles)
        VALUES ($1, $2, $3, $4)
        ON CONFLICT (username) DO UPDATE
        SET display_name = EXCLUDED.display_name,
            password_hash = EXCLUDED.password_hash,
            roles = EXCLUDED.roles,
            disabled_at = NULL
        RETURNING id
        """,
        username,
        display_name,
        hash_secret(password),
        list(roles),
    )
    logger.info("user %s (id %s) saved with roles %s", username, user_id, list(roles))
    return user_id


async def ensure_assignment(executor: Executor, user_id: int, patient_id: str) -> bool:
    """Give the user an open-ended assignment unless a current one exists.

    Returns True when a new assignment was created.
    """
    created = await executor.fetchval(
        """
        INSERT INTO assignments (user_id, patient_id)
        SELECT $1, $2
        WHERE NOT EXISTS (
            SELECT 1 FROM assignments
            WHERE user_id = $1 AND patient_id = $2
              AND starts_at <= now() AND (ends_at IS NULL OR now() < ends_at)
        )
        RETURNING true
        """,
        user_id,
        patient_id,
    )
    return bool(created)
