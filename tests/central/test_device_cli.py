"""``aura-central devices ...`` against a real database."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from central_testkit import JWT_SECRET

from central import cli

SEED_ARGS = [
    "seed-demo",
    "--device-id=bedside-7",
    "--device-secret=a-device-secret",
    "--password=a-password",
]


async def _execute(url: str, statement: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetch(statement)
    finally:
        await connection.close()


@pytest.fixture
def seeded_database(
    postgres_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Iterator[str]:
    """Point DATABASE_URL at a fresh database holding the demo ward."""
    name = f"aura_cli_{uuid.uuid4().hex[:16]}"
    asyncio.run(_execute(postgres_url, f'CREATE DATABASE "{name}"'))
    url = urlunsplit(urlsplit(postgres_url)._replace(path=f"/{name}"))
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("JWT_SECRET", JWT_SECRET)
    assert cli.main(SEED_ARGS) == 0
    capsys.readouterr()
    yield url
    asyncio.run(
        _execute(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    )


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    status = cli.main(["devices", *args])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def test_register_with_details(
    seeded_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(
        capsys,
        "register",
        "bedside-8",
        "--bed",
        "bed-1",
        "--serial",
        "SN-8",
        "--model",
        "AURA-B1",
        "--firmware",
        "1.0.0",
    )
    assert status == 0
    printed = json.loads(out)
    assert printed["device_id"] == "bedside-8"
    assert printed["bed"] == "bed-1"
    status, out, _ = _run(capsys, "show", "bedside-8")
    assert status == 0
    shown = json.loads(out)
    assert shown["serial_number"] == "SN-8"
    assert shown["model"] == "AURA-B1"
    assert shown["connected"] is None
    assert printed["secret"] not in out


def test_register_again_rekeys(
    seeded_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    before = asyncio.run(
        _execute(
            seeded_database, "SELECT secret_hash FROM devices WHERE id = 'bedside-7'"
        )
    )
    status, out, _ = _run(capsys, "register", "bedside-7", "--bed", "bed-1")
    assert status == 0
    rows = asyncio.run(
        _execute(
            seeded_database,
            "SELECT secret_hash, previous_secret_hash FROM devices"
            " WHERE id = 'bedside-7'",
        )
    )
    assert rows[0]["previous_secret_hash"] == before[0]["secret_hash"]
    assert rows[0]["secret_hash"] != before[0]["secret_hash"]


def test_rotate_bind_unbind_retire(
    seeded_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(capsys, "rotate", "bedside-7")
    assert status == 0
    assert len(json.loads(out)["secret"]) >= 40
    status, out, _ = _run(capsys, "unbind", "bedside-7")
    assert json.loads(out)["bed_id"] is None
    status, out, _ = _run(capsys, "bind", "bedside-7", "bed-1")
    assert json.loads(out)["bed_id"] == "bed-1"
    status, out, _ = _run(capsys, "retire", "bedside-7")
    assert status == 0
    assert json.loads(out)["retired_at"] is not None
    status, out, _ = _run(capsys, "list")
    assert json.loads(out) == []
    status, out, _ = _run(capsys, "list", "--include-retired")
    assert [device["id"] for device in json.loads(out)] == ["bedside-7"]
    actions = asyncio.run(
        _execute(
            seeded_database,
            "SELECT action, actor_kind, actor_id FROM audit_log"
            " WHERE action LIKE 'device.%' ORDER BY id",
        )
    )
    assert [row["action"] for row in actions] == [
        "device.rotate_credential",
        "device.unbind",
        "device.bind",
        "device.retire",
    ]
    assert all(row["actor_kind"] == "system" for row in actions)
    assert all(row["actor_id"].startswith("cli:") for row in actions)


def test_retired_device_cannot_rotate(
    seeded_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _run(capsys, "retire", "bedside-7")
    status, _, err = _run(capsys, "rotate", "bedside-7")
    assert status == 2
    assert "is retired" in err


def test_unknown_device_named(
    seeded_database: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = _run(capsys, "show", "bedside-404")
    assert status == 2
    assert "device 'bedside-404' not found" in err
