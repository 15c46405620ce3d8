"""Fixtures shared by all test packages: a PostgreSQL server and fresh databases."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """URL of a PostgreSQL server used by the whole session.

    AURA_TEST_DATABASE_URL when set (its role needs CREATEDB); otherwise one embedded
    server in a temporary directory, deleted at the end of the session.
    """
    configured = os.environ.get("AURA_TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    from central.db.embedded import start_embedded

    # Not under pytest's tmp_path: when tests run as root the server runs as an
    # unprivileged user, and pytest resets /tmp/pytest-of-<user> to mode 700 each
    # time any session starts, which would lock that user out of its data.
    parent = Path(tempfile.mkdtemp(prefix="aura-test-postgres-"))
    database = start_embedded(parent / "pgdata", delete_on_release=True)
    try:
        yield database.uri
    finally:
        database.release()
        shutil.rmtree(parent, ignore_errors=True)


def _url_for_database(server_url: str, name: str) -> str:
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


@pytest.fixture
async def database_url(postgres_url: str) -> AsyncIterator[str]:
    """URL of a new empty database, dropped after the test."""
    name = f"aura_test_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _url_for_database(postgres_url, name)
    admin = await asyncpg.connect(postgres_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()
