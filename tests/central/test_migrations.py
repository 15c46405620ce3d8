"""Schema migrations against a real PostgreSQL, and the append-only audit log."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from central.audit import Actor, AuditLog
from central.db.migrations import apply_migrations, load_migrations


async def test_migrations_are_idempotent(database_url: str) -> None:
    connection = await asyncpg.connect(database_url)
    try:
        first = await apply_migrations(connection)
        second = await apply_migrations(connection)
        recorded = await connection.fetch(
            "SELECT version, name FROM schema_migrations ORDER BY version"
        )
    finally:
        await connection.close()
    versions = [migration.version for migration in load_migrations()]
    assert first == versions
    assert second == []
    assert [row["version"] for row in recorded] == versions
    assert recorded[0]["name"] == "initial"


async def test_concurrent_migrations_apply_once(database_url: str) -> None:
    connections = [await asyncpg.connect(database_url) for _ in range(3)]
    try:
        results = await asyncio.gather(
            *(apply_migrations(connection) for connection in connections)
        )
        count = await connections[0].fetchval("SELECT count(*) FROM schema_migrations")
    finally:
        for connection in connections:
            await connection.close()
    applied = [versions for versions in results if versions]
    assert len(applied) == 1
    assert count == len(load_migrations())


async def _insert_audit_row(connection: asyncpg.Connection) -> None:
    # A plain INSERT is rejected: every row must link to the hash chain.
    await AuditLog().record(connection, Actor("system"), "x")


@pytest.fixture
async def migrated(database_url: str):
    connection = await asyncpg.connect(database_url)
    await apply_migrations(connection)
    yield connection
    await connection.close()


async def test_audit_log_rejects_update(migrated: asyncpg.Connection) -> None:
    await _insert_audit_row(migrated)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await migrated.execute("UPDATE audit_log SET outcome = 'refused'")


async def test_audit_log_rejects_delete(migrated: asyncpg.Connection) -> None:
    await _insert_audit_row(migrated)
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await migrated.execute("DELETE FROM audit_log")
    assert await migrated.fetchval("SELECT count(*) FROM audit_log") == 1


async def test_audit_log_rejects_truncate(migrated: asyncpg.Connection) -> None:
    with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
        await migrated.execute("TRUNCATE audit_log")
