"""Helpers for scale-out tests: a private redis-server and central served by uvicorn.

Named distinctly so it cannot clash with helper modules of other test packages.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import redis.asyncio as redis
from central_testkit import LiveServer, run_uvicorn
from starlette.applications import Starlette

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def redis_server_available() -> bool:
    return Path(REDIS_SERVER).exists()


class RedisProcess:
    """A redis-server on 127.0.0.1 without persistence, which a test may kill."""

    def __init__(self, workdir: Path, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            [
                REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", str(self.workdir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + REDIS_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited with status {self.process.returncode}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError(f"redis-server did not listen on port {self.port}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None


@asynccontextmanager
async def serve(app: Starlette) -> AsyncIterator[LiveServer]:
    """Run ``app`` with its lifespan under uvicorn on a free port of 127.0.0.1."""
    async with app.router.lifespan_context(app):
        async with run_uvicorn(app) as server:
            yield server


async def wait_for_subscribers(
    url: str, channel: str, count: int, timeout_s: float = 10.0
) -> None:
    """Wait until ``count`` connections subscribe to ``channel`` on Redis at ``url``."""
    client = redis.Redis.from_url(url)
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                [(_, subscribers)] = await client.pubsub_numsub(channel)
                if subscribers >= count:
                    return
                await asyncio.sleep(0.02)
    finally:
        await client.aclose()
