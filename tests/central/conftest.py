"""Fixtures that run central in-process against a fresh database per test.

``app`` is the application with its lifespan entered (pool open, migrations run),
``client`` calls it over ASGI with httpx, ``live_server`` serves the same app with
uvicorn on 127.0.0.1 for WebSocket tests, and ``demo`` seeds the demo ward.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import argon2
import httpx
import pytest
from central_testkit import (
    DEVICE_ID,
    DEVICE_SECRET,
    JWT_SECRET,
    PASSWORD,
    Demo,
    LiveServer,
    run_uvicorn,
)
from starlette.applications import Starlette

import central.auth
from central.app import create_app
from central.auth import issue_token
from central.config import Settings
from central.seed import seed_demo
from central.services import Services


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Use cheap Argon2 parameters in tests; production keeps the library defaults."""
    cheap = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(central.auth, "_hasher", cheap)
    central.auth._dummy_hash.cache_clear()


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings.from_environ(
        {
            "DATABASE_URL": database_url,
            "JWT_SECRET": JWT_SECRET,
            "AURA_DATA_DIR": str(tmp_path),
        }
    )


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[Starlette]:
    application = create_app(settings)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def services(app: Starlette) -> Services:
    return app.state.services


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://central.test"
    ) as c:
        yield c


@pytest.fixture
async def demo(services: Services) -> Demo:
    summary = await seed_demo(services.pool, DEVICE_ID, DEVICE_SECRET, PASSWORD)
    # The demo patient has been in the bed for a day, so test data timed a little
    # in the past still belongs to them (see central.admissions).
    await services.pool.execute(
        "UPDATE bed_stays SET started_at = now() - interval '1 day'"
    )
    users = {user["username"]: user["id"] for user in summary["users"]}
    ana, ben = users["nurse.ana"], users["nurse.ben"]
    ttl = services.settings.token_ttl_s
    return Demo(
        patient_id=summary["patient"],
        bed_id=summary["bed"],
        ana_id=ana,
        ben_id=ben,
        ana_token=issue_token(JWT_SECRET, ana, ttl),
        ben_token=issue_token(JWT_SECRET, ben, ttl),
    )


@pytest.fixture
async def live_server(app: Starlette) -> AsyncIterator[LiveServer]:
    # The lifespan already runs under the app fixture, so uvicorn must not run it again.
    async with run_uvicorn(app) as server:
        yield server
