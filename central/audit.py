"""The append-only audit log: who read or was refused what, and device sessions.

Rows are only ever inserted; a database trigger raises on UPDATE, DELETE and
TRUNCATE. Writing fails closed: if the row cannot be stored the error propagates, so
a read of patient data never succeeds without its audit row.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Literal

import asyncpg

logger = logging.getLogger(__name__)

ActorKind = Literal["user", "device", "anonymous", "system"]
Outcome = Literal["ok", "refused", "error"]
Executor = asyncpg.Pool | asyncpg.Connection


@dataclass(frozen=True)
class Actor:
    """The actor of an audited action: a user, a device or an unauthenticated caller."""

    kind: ActorKind
    id: str | None = None

    @classmethod
    def user(cls, user_id: int | str) -> Actor:
        return cls("user", str(user_id))

    @classmethod
    def device(cls, device_id: str) -> Actor:
        return cls("device", device_id)

    @classmethod
    def anonymous(cls, claimed_id: str | None = None) -> Actor:
        """Return an unauthenticated caller, with the identity it claimed if any."""
        return cls("anonymous", claimed_id)


class AuditLog:
    """Writes audit rows, or only logs at DEBUG when auditing was turned off."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled

    async def record(
        self,
        executor: Executor,
        actor: Actor,
        action: str,
        *,
        outcome: Outcome = "ok",
        patient_id: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        """Insert one audit row; raise if the database does not store it."""
        if not self.enabled:
            logger.debug(
                "audit off: %s %s %s on %s -> %s",
                actor.kind,
                actor.id,
                action,
                patient_id,
                outcome,
            )
            return
        await executor.execute(
            """
            INSERT INTO audit_log
                (actor_kind, actor_id, action, patient_id, detail, outcome)
            VALUES ($1, $2, $3, $4, $5, $6)
            """,
            actor.kind,
            actor.id,
            action,
            patient_id,
            detail or {},
            outcome,
        )
