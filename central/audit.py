"""The append-only, hash-chained audit log: who read or was refused what, and devices.

Rows are only ever inserted; database triggers raise on UPDATE, DELETE and TRUNCATE.
Each row also stores ``prev_hash``, the ``row_hash`` of the row before it, and its own
``row_hash``, the SHA-256 of ``canonical_row``. Changing or removing any row then
breaks the chain at that row, and ``verify_chain`` reports where.

Appends are serialised twice: ``record`` takes a transaction-level advisory lock
before it reads the chain head, and the insert trigger of migration 0004 locks the
head row and rejects a row that does not link to it. So concurrent writers, in one
process or many, cannot fork the chain.

The chain detects edits by anyone who does not also rewrite every later hash and
the head. The table owner can do that. So central should run as a role that does not
own the audit tables, with only the rights listed in migration 0004. The head hash
that ``aura-central audit verify`` prints can also be kept outside the database.

Writing fails closed: if the row cannot be stored the error propagates, so a read of
patient data never succeeds without its audit row.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import asyncpg

logger = logging.getLogger(__name__)

ActorKind = Literal["user", "device", "anonymous", "system"]
Outcome = Literal["ok", "refused", "error"]
Executor = asyncpg.Pool | asyncpg.Connection

# Any fixed bigint works; this one spells "AURA" followed by 2 in hex.
AUDIT_CHAIN_LOCK_KEY = 0x4155524102
GENESIS_HASH = "0" * 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


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


def canonical_row(row: dict[str, Any]) -> bytes:
    """Encode the hashed fields of an audit row as compact JSON with sorted keys.

    ``at`` is encoded as integer microseconds since 1970-01-01 UTC, the resolution of
    timestamptz. ``detail`` must be the value as decoded from the stored jsonb, so
    the writer and the verifier hash the same numbers and key order.
    """
    fields = {
        "id": row["id"],
        "at_us": (row["at"] - _EPOCH) // _MICROSECOND,
        "actor_kind": row["actor_kind"],
        "actor_id": row["actor_id"],
        "action": row["action"],
        "patient_id": row["patient_id"],
        "detail": row["detail"],
        "outcome": row["outcome"],
        "prev_hash": row["prev_hash"],
    }
    text = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.encode("utf-8")


def row_hash(row: dict[str, Any]) -> str:
    """Return the hex SHA-256 of ``canonical_row(row)``."""
    return hashlib.sha256(canonical_row(row)).hexdigest()


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
        """Append one audit row to the chain; raise if the database does not store it.

        Given a connection already inside a transaction, the row commits with that
        transaction, and other audit writers wait for it.
        """
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
        fields = {
            "actor_kind": actor.kind,
            "actor_id": actor.id,
            "action": action,
            "patient_id": patient_id,
            "outcome": outcome,
        }
        detail_json = json.dumps(detail or {})
        if isinstance(executor, asyncpg.Pool):
            async with executor.acquire() as connection:
                await _append(connection, fields, detail_json)
        else:
            await _append(executor, fields, detail_json)


async def _append(
    connection: asyncpg.Connection, fields: dict[str, Any], detail_json: str
) -> None:
    async with connection.transaction():
        await connection.execute(
            "SELECT pg_advisory_xact_lock($1)", AUDIT_CHAIN_LOCK_KEY
        )
        # The detail goes through jsonb and back so that the hash covers exactly the
        # value that verify_chain will read. Text in and out keeps this independent
        # of the connection's jsonb codec.
        head = await connection.fetchrow(
            """
            SELECT h.row_hash, nextval(pg_get_serial_sequence('audit_log', 'id')) AS id,
                   clock_timestamp() AS at, $1::text::jsonb::text AS detail
            FROM audit_chain_head h
            """,
            detail_json,
        )
        row = {
            **fields,
            "id": head["id"],
            "at": head["at"],
            "detail": json.loads(head["detail"]),
            "prev_hash": head["row_hash"],
        }
        row["row_hash"] = row_hash(row)
        await connection.execute(
            """
            INSERT INTO audit_log (id, at, actor_kind, actor_id, action, patient_id,
                                   detail, outcome, prev_hash, row_hash)
            VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9, $10)
            """,
            row["id"],
            row["at"],
            row["actor_kind"],
            row["actor_id"],
            row["action"],
            row["patient_id"],
            head["detail"],
            row["outcome"],
            row["prev_hash"],
            row["row_hash"],
        )


@dataclass(frozen=True)
class ChainBreak:
    """The first audit row at which the hash chain does not hold, and why."""

    row_id: int
    problem: str


@dataclass(frozen=True)
class ChainReport:
    """The outcome of ``verify_chain``."""

    rows: int
    unchained_rows: int
    head_id: int
    head_hash: str
    broken: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.broken is None


VERIFY_BATCH_ROWS = 1000


async def verify_chain(
    executor: Executor, batch_rows: int = VERIFY_BATCH_ROWS
) -> ChainReport:
    """Walk the chained audit rows in id order and return the first broken link.

    ``rows`` counts the chained rows checked up to the break, or all of them.
    """
    head = await executor.fetchrow(
        "SELECT last_id, row_hash, unchained_through_id FROM audit_chain_head"
    )
    unchained = await executor.fetchval(
        "SELECT count(*) FROM audit_log WHERE id <= $1", head["unchained_through_id"]
    )
    checked = 0
    previous_id = head["unchained_through_id"]
    previous_hash = GENESIS_HASH
    while True:
        batch = await executor.fetch(
            """
            SELECT id, at, actor_kind, actor_id, action, patient_id,
                   detail::text AS detail, outcome, prev_hash, row_hash
            FROM audit_log WHERE id > $1 ORDER BY id LIMIT $2
            """,
            previous_id,
            batch_rows,
        )
        for record in batch:
            row = {**dict(record), "detail": json.loads(record["detail"])}
            problem = _link_problem(row, previous_id, previous_hash)
            if problem is not None:
                return _report(checked, unchained, head, ChainBreak(row["id"], problem))
            checked += 1
            previous_id, previous_hash = row["id"], row["row_hash"]
        if len(batch) < batch_rows:
            break
    broken = None
    if (previous_id, previous_hash) != (head["last_id"], head["row_hash"]):
        broken = ChainBreak(
            head["last_id"],
            f"the chain head names row {head['last_id']} with hash "
            f"{head['row_hash']}, but the last row found is {previous_id} with hash "
            f"{previous_hash}; rows at the end were removed or the head was changed",
        )
    return _report(checked, unchained, head, broken)


def _link_problem(
    row: dict[str, Any], previous_id: int, previous_hash: str
) -> str | None:
    if row["row_hash"] is None or row["prev_hash"] is None:
        return "the row has no prev_hash or row_hash"
    computed = row_hash(row)
    if computed != row["row_hash"]:
        return (
            f"stored row_hash {row['row_hash']} does not match the row's fields, "
            f"which hash to {computed}; the row was changed after it was written"
        )
    if row["prev_hash"] != previous_hash:
        before = f"row {previous_id}"
        if previous_hash == GENESIS_HASH:
            before = "the chain start"
        return (
            f"prev_hash {row['prev_hash']} differs from {previous_hash}, the hash of "
            f"{before}; a row between them was removed or the earlier row rewritten"
        )
    return None


def _report(
    checked: int, unchained: int, head: asyncpg.Record, broken: ChainBreak | None
) -> ChainReport:
    return ChainReport(
        rows=checked,
        unchained_rows=unchained,
        head_id=head["last_id"],
        head_hash=head["row_hash"],
        broken=broken,
    )
