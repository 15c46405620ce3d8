"""The aura-central command against a real database."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from central_testkit import JWT_SECRET

from central import cli
from central.db.migrations import load_migrations

REPO_ROOT = Path(__file__).resolve().parents[2]
SEED_ARGS = [
    "seed-demo",
    "--device-id",
    "bedside-7",
    "--device-secret",
    "a-device-secret",
    "--password",
    "a-password",
]


async def _admin(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(server_url)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


async def _fetch(url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(query)
    finally:
        await connection.close()


@pytest.fixture
def cli_database(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Set DATABASE_URL to a fresh database.

    Synchronous, because cli.main starts its own event loop.
    """
    name = f"aura_cli_{uuid.uuid4().hex[:16]}"
    asyncio.run(_admin(postgres_url, f'CREATE DATABASE "{name}"'))
    url = urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("JWT_SECRET", JWT_SECRET)
    yield url
    asyncio.run(_admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def test_migrate_twice(cli_database: str) -> None:
    assert cli.main(["migrate"]) == 0
    assert cli.main(["migrate"]) == 0
    rows = asyncio.run(_fetch(cli_database, "SELECT version FROM schema_migrations"))
    expected = [migration.version for migration in load_migrations()]
    assert sorted(row["version"] for row in rows) == expected


def test_seed_demo_twice_is_idempotent(
    cli_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(SEED_ARGS) == 0
    first = json.loads(capsys.readouterr().out)
    assert cli.main(SEED_ARGS) == 0
    second = json.loads(capsys.readouterr().out)
    assert first == second
    assert first["patient"] == "P-0001"
    assert first["device"] == {"id": "bedside-7", "bed": "bed-1"}
    assignments = asyncio.run(
        _fetch(
            cli_database,
            "SELECT u.username, a.bed_id FROM assignments a "
            "JOIN users u ON u.id = a.user_id",
        )
    )
    assert [tuple(row) for row in assignments] == [("nurse.ana", "bed-1")]
    users = asyncio.run(_fetch(cli_database, "SELECT username FROM users ORDER BY 1"))
    assert [row["username"] for row in users] == ["nurse.ana", "nurse.ben"]


def test_register_device_prints_secret(
    cli_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(SEED_ARGS) == 0
    capsys.readouterr()
    assert cli.main(["devices", "register", "bedside-8", "--bed", "bed-1"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["device_id"] == "bedside-8"
    assert len(printed["secret"]) >= 40
    hashes = asyncio.run(_fetch(cli_database, "SELECT secret_hash FROM devices"))
    assert all(printed["secret"] not in row["secret_hash"] for row in hashes)


def test_users_add_rejects_unknown_role(
    cli_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = [
        "users",
        "add",
        "dr.kim",
        "--display-name",
        "Kim",
        "--role",
        "wizard",
        "--password",
        "pw",
    ]
    assert cli.main(args) == 2
    assert "unknown roles ['wizard']" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_for_health(port: int, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(
                f"server exited early with status {process.returncode}"
            )
        try:
            response = httpx.get(f"http://127.0.0.1:{port}/health", trust_env=False)
        except httpx.TransportError:
            time.sleep(0.1)
            continue
        assert response.json()["database"] == "ok"
        return
    raise AssertionError("server did not answer /health within 20 s")


def test_serve_stops_on_sigterm(cli_database: str) -> None:
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen(
        [sys.executable, "-m", "central.cli", "serve", "--port", str(port)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for_health(port, process)
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=20)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    # uvicorn re-raises the signal after a clean shutdown, so the exit reports it.
    assert process.returncode in (0, -signal.SIGTERM)
    assert f"starting central on 127.0.0.1:{port}" in stderr
    assert "central stopped" in stderr
