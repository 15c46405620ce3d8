"""One running ward for all browser tests: central, board, agent and headless Chromium.

Chromium is the system's (Debian package ``chromium``), driven by Playwright; no
browser is downloaded. Without it the tests skip, unless AURA_REQUIRE_BROWSER=1, in
which case they fail. Screenshots go to AURA_ARTIFACTS_DIR (default: a temporary
directory of the test session).
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from browser_testkit import run_async

from demo.stack import Stack

CHROMIUM_CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
# The board replays record 100 in real time and flat-lines the lead from 8 s to
# 16 s, so the asystole alarm is raised about 12 s after the board starts.
FLATLINE_AT_S = 8.0
FLATLINE_FOR_S = 8.0


def chromium_path() -> str | None:
    configured = os.environ.get("AURA_CHROMIUM")
    if configured:
        return configured
    for candidate in CHROMIUM_CANDIDATES:
        if Path(candidate).exists():
            return candidate
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def chromium() -> str:
    path = chromium_path()
    required = os.environ.get("AURA_REQUIRE_BROWSER") == "1"
    problem = None
    if path is None or not Path(path).exists():
        problem = (
            f"no Chromium at {path or '/usr/bin/chromium'} "
            "(apt-get install -y chromium, or set AURA_CHROMIUM)"
        )
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing (pip install -e '.[test]')"
    if problem is not None:
        if required:
            pytest.fail(f"AURA_REQUIRE_BROWSER=1 but {problem}")
        pytest.skip(problem)
    assert path is not None
    return path


@pytest.fixture(scope="session")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    configured = os.environ.get("AURA_ARTIFACTS_DIR")
    path = Path(configured) if configured else tmp_path_factory.mktemp("artifacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


async def _create_database(server_url: str) -> str:
    name = f"aura_browser_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


async def _drop_database(server_url: str, url: str) -> None:
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(
            f'DROP DATABASE IF EXISTS "{urlsplit(url).path.lstrip("/")}" WITH (FORCE)'
        )
    finally:
        await admin.close()


@pytest.fixture(scope="module")
def ward(
    chromium: str, postgres_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    """Central on uvicorn with the demo ward; board and agent start streaming."""
    database_url = run_async(_create_database(postgres_url))
    stack = Stack(
        workdir=tmp_path_factory.mktemp("ward"),
        flatline_at_s=FLATLINE_AT_S,
        flatline_for_s=FLATLINE_FOR_S,
        database_url=database_url,
    )
    try:
        stack.seed()
        stack.start_central()
        stack.start_board()
        stack.start_agent()
        yield stack
    finally:
        stack.stop_all()
        run_async(_drop_database(postgres_url, database_url))
