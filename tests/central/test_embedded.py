"""The embedded PostgreSQL used when DATABASE_URL is unset."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest
from central_testkit import JWT_SECRET

from central.app import create_app
from central.config import Settings
from central.db.embedded import start_embedded


@pytest.fixture
def data_dir() -> Iterator[Path]:
    # Outside pytest's tmp_path for the reason given in tests/conftest.py.
    parent = Path(tempfile.mkdtemp(prefix="aura-test-embedded-"))
    yield parent
    shutil.rmtree(parent, ignore_errors=True)


async def _select_one(uri: str) -> int:
    connection = await asyncpg.connect(uri)
    try:
        return await connection.fetchval("SELECT 1")
    finally:
        await connection.close()


async def test_attach_to_running_server(data_dir: Path) -> None:
    pgdata = data_dir / "pgdata"
    owner = start_embedded(pgdata, delete_on_release=True)
    try:
        guest = start_embedded(pgdata)
        assert owner.started_here is True
        assert guest.started_here is False
        assert guest.uri == owner.uri
        guest.release()
        assert await _select_one(owner.uri) == 1
    finally:
        owner.release()
    assert not pgdata.exists()


async def test_app_without_database_url(data_dir: Path) -> None:
    settings = Settings.from_environ(
        {"AURA_DATA_DIR": str(data_dir / "central"), "JWT_SECRET": JWT_SECRET}
    )
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://t"
        ) as client:
            health = await client.get("/health")
    assert health.json()["database"] == "ok"
    assert (data_dir / "central" / "pgdata" / "PG_VERSION").exists()
    assert not (data_dir / "central" / "pgdata" / "postmaster.pid").exists()
