"""The asyncpg connection pool shared by every request and socket."""

from __future__ import annotations

import json
import logging

import asyncpg

logger = logging.getLogger(__name__)

POOL_MIN_SIZE = 1
POOL_MAX_SIZE = 10
COMMAND_TIMEOUT_S = 30.0


async def _init_connection(connection: asyncpg.Connection) -> None:
    # asyncpg returns jsonb as text by default; decode it so callers see dicts.
    await connection.set_type_codec(
        "jsonb", encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
    )


async def open_pool(dsn: str, *, max_size: int = POOL_MAX_SIZE) -> asyncpg.Pool:
    """Open a pool to ``dsn`` with jsonb decoded to Python objects."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=POOL_MIN_SIZE,
        max_size=max_size,
        command_timeout=COMMAND_TIMEOUT_S,
        init=_init_connection,
    )
    logger.info("database pool open (max %d connections)", max_size)
    return pool


async def database_is_up(pool: asyncpg.Pool, timeout_s: float = 2.0) -> bool:
    """Return True when a trivial query succeeds within ``timeout_s``."""
    try:
        await pool.fetchval("SELECT 1", timeout=timeout_s)
    except (
        OSError,
        TimeoutError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
    ) as exc:
        logger.warning("database health check failed: %s", exc)
        return False
    return True
