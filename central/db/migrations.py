"""Schema migrations: numbered SQL files applied once each, in order, at every start.

Each file runs inside its own transaction together with its row in
``schema_migrations``, so a failed file leaves no trace. A session-level advisory
lock serialises processes that start at the same time against one database.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

logger = logging.getLogger(__name__)

# Any fixed bigint works; this one spells "AURA" followed by 1 in hex.
MIGRATION_LOCK_KEY = 0x4155524101
_FILE_NAME = re.compile(r"^(?P<version>\d{4})_(?P<name>[a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


class MigrationError(RuntimeError):
    """The migration files themselves are inconsistent."""


def load_migrations() -> list[Migration]:
    """Read the packaged ``NNNN_name.sql`` files, sorted by version."""
    folder = resources.files("central.db").joinpath("migrations")
    found: dict[int, Migration] = {}
    for entry in folder.iterdir():
        match = _FILE_NAME.match(entry.name)
        if match is None:
            if entry.name.endswith(".sql"):
                raise MigrationError(
                    f"migration file {entry.name!r} must be named NNNN_lower_case.sql"
                )
            continue
        version = int(match.group("version"))
        if version in found:
            raise MigrationError(
                f"migration version {version} appears twice: "
                f"{found[version].name!r} and {match.group('name')!r}"
            )
        found[version] = Migration(version, match.group("name"), entry.read_text())
    return [found[version] for version in sorted(found)]


async def apply_migrations(connection: asyncpg.Connection) -> list[int]:
    """Apply every migration not yet recorded; return the versions applied now."""
    migrations = load_migrations()
    await connection.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await connection.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                version integer PRIMARY KEY,
                name text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now()
            )
            """
        )
        rows = await connection.fetch("SELECT version FROM schema_migrations")
        done = {row["version"] for row in rows}
        _warn_about_unknown_versions(done, migrations)
        applied = []
        for migration in migrations:
            if migration.version in done:
                continue
            await _apply_one(connection, migration)
            applied.append(migration.version)
    finally:
        await connection.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    if applied:
        logger.info("applied migrations %s", applied)
    else:
        logger.info("database schema is up to date (%d migrations)", len(migrations))
    return applied


async def _apply_one(connection: asyncpg.Connection, migration: Migration) -> None:
    logger.info("applying migration %04d_%s", migration.version, migration.name)
    async with connection.transaction():
        await connection.execute(migration.sql)
        await connection.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            migration.version,
            migration.name,
        )


def _warn_about_unknown_versions(done: set[int], migrations: list[Migration]) -> None:
    known = {migration.version for migration in migrations}
    unknown = sorted(done - known)
    if unknown:
        logger.warning(
            "database has migrations %s that this version of central does not know; "
            "it may be older than the schema",
            unknown,
        )
