"""Shared parts of the load benchmarks: database, central processes, ward, dashboards.

Central runs as ``python -m central.cli serve`` in its own process, as deployed, so
the benchmark process (load generator and dashboard clients) does not share its event
loop. Simulated devices and nurses are registered with cheap Argon2 parameters, so
that 1,000 connections do not spend a minute verifying hashes. Password hashing is
not what these benchmarks measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import argon2
import asyncpg
import httpx
import msgspec
from websockets.asyncio.client import ClientConnection, connect

import central.auth
from central.auth import ROLE_NURSE, issue_token
from central.db.migrations import apply_migrations
from central.devices import register_device
from central.users import ensure_assignment, upsert_user
from firmware_sim.load import device_ids
from protocol.messages import Subscribe, encode

CENTRAL_START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
DEVICE_PREFIX = "bench-"
TOKEN_TTL_S = 6 * 3600


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def machine_description() -> str:
    """Return CPU model, logical cores and Python version, as printed by each run."""
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return (
        f"{model}, {os.cpu_count()} logical cores, Python {platform.python_version()}"
        f" on {platform.system()}"
    )


@contextlib.contextmanager
def database(url: str | None) -> Iterator[str]:
    """Yield a PostgreSQL URL: ``url`` itself, or a fresh embedded server."""
    if url:
        yield url
        return
    from central.db.embedded import start_embedded

    parent = Path(tempfile.mkdtemp(prefix="aura-bench-postgres-"))
    embedded = start_embedded(parent / "pgdata", delete_on_release=True)
    try:
        yield embedded.uri
    finally:
        embedded.release()
        shutil.rmtree(parent, ignore_errors=True)


async def fresh_database(server_url: str) -> str:
    """Create an empty database on the server and return its URL."""
    from urllib.parse import urlsplit, urlunsplit

    name = f"aura_bench_{secrets.token_hex(6)}"
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))


async def drop_database(server_url: str, url: str) -> None:
    from urllib.parse import urlsplit

    name = urlsplit(url).path.lstrip("/")
    admin = await asyncpg.connect(server_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@dataclass
class Ward:
    """The registered simulated beds and the nurses watching them."""

    device_secret: str
    device_ids: list[str]
    patient_ids: list[str]
    # Per dashboard client: its bearer token and the patients it watches.
    clients: list[tuple[str, list[str]]]


def watched_beds(beds: int, clients: int, beds_per_client: int) -> list[list[int]]:
    """Give each client ``beds_per_client`` consecutive beds, spread over the ward.

    Client c starts at bed c * beds / clients, so every bed is watched when
    beds_per_client * clients >= beds.
    """
    per_client = min(beds_per_client, beds)
    return [
        [(math.floor(c * beds / clients) + j) % beds for j in range(per_client)]
        for c in range(clients)
    ]


async def seed_ward(
    url: str, beds: int, clients: int, beds_per_client: int, jwt_secret: str
) -> Ward:
    """Migrate the database and register beds, patients, devices and nurses."""
    cheap = argon2.PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    central.auth._hasher = cheap
    secret = secrets.token_urlsafe(24)
    devices = device_ids(DEVICE_PREFIX, beds)
    patients = [f"P-B{index:04d}" for index in range(1, beds + 1)]
    layout = watched_beds(beds, clients, beds_per_client)
    connection = await asyncpg.connect(url)
    try:
        await apply_migrations(connection)
        async with connection.transaction():
            await connection.execute(
                "INSERT INTO wards (id, name) VALUES ('bench', 'Benchmark ward')"
            )
            await connection.executemany(
                "INSERT INTO beds (id, ward_id, label) VALUES ($1, 'bench', $1)",
                [(f"bench-bed-{i}",) for i in range(1, beds + 1)],
            )
            await connection.executemany(
                "INSERT INTO patients (id, display_name, bed_id) VALUES ($1, $1, $2)",
                [(p, f"bench-bed-{i}") for i, p in enumerate(patients, start=1)],
            )
            for index, device_id in enumerate(devices, start=1):
                await register_device(connection, device_id, f"bench-bed-{index}", secret)
            tokens = []
            for index, watched in enumerate(layout, start=1):
                user_id = await upsert_user(
                    connection, f"bench.nurse{index}", f"Nurse {index}",
                    secrets.token_urlsafe(16), [ROLE_NURSE],
                )
                for bed in watched:
                    await ensure_assignment(connection, user_id, patients[bed])
                tokens.append(issue_token(jwt_secret, user_id, TOKEN_TTL_S))
    finally:
        await connection.close()
    clients_list = [
        (token, [patients[bed] for bed in watched])
        for token, watched in zip(tokens, layout, strict=True)
    ]
    return Ward(secret, devices, patients, clients_list)


@dataclass
class CentralProcess:
    """One ``central.cli serve`` process on a free port of 127.0.0.1."""

    workdir: Path
    database_url: str
    jwt_secret: str
    redis_url: str | None = None
    channel_prefix: str | None = None
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    profile_path: Path | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def environment(self) -> dict[str, str]:
        environment = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith("AURA_") and key not in ("REDIS_URL", "DATABASE_URL")
        }
        environment.update(
            DATABASE_URL=self.database_url,
            JWT_SECRET=self.jwt_secret,
            AURA_DATA_DIR=str(self.workdir / f"central-{self.port}"),
            AURA_HOST="127.0.0.1",
            AURA_PORT=str(self.port),
            AURA_LOG_LEVEL="WARNING",
        )
        if self.redis_url:
            environment["REDIS_URL"] = self.redis_url
        if self.channel_prefix:
            environment["AURA_REDIS_CHANNEL_PREFIX"] = self.channel_prefix
        return environment

    def start(self) -> None:
        command = [sys.executable, "-m", "central.cli", "serve"]
        if self.profile_path is not None:
            command = [
                sys.executable, "-m", "pyinstrument",
                "-r", "text", "-o", str(self.profile_path), "-m", "central.cli", "serve",
            ]
        log = open(self.workdir / f"central-{self.port}.log", "ab")
        with log:
            self.process = subprocess.Popen(
                command, env=self.environment(), stdout=log, stderr=log,
                start_new_session=True,
            )
        deadline = time.monotonic() + CENTRAL_START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"central exited with status {self.process.returncode}; see "
                    f"{self.workdir}/central-{self.port}.log"
                )
            try:
                response = httpx.get(f"{self.base_url}/health", timeout=1.0, trust_env=False)
                if response.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"central did not respond on {self.base_url} in time")

    def cpu_seconds(self) -> float:
        """Return user plus system CPU time the process has used so far."""
        assert self.process is not None
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def counters(self) -> dict[str, int]:
        response = httpx.get(f"{self.base_url}/metrics", timeout=5.0, trust_env=False)
        counters: dict[str, int] = response.json()
        return counters

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        # Under pyinstrument, SIGINT ends central with KeyboardInterrupt, after which
        # the profiler still writes its report; SIGTERM would lose it.
        self.process.send_signal(
            signal.SIGINT if self.profile_path is not None else signal.SIGTERM
        )
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class RedisServer:
    """A private redis-server without persistence on a free port of 127.0.0.1."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found; install it to run this mode")
        self.process = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    return
            except OSError:
                time.sleep(0.05)
        raise TimeoutError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(10)


class _Segment(msgspec.Struct):
    first_sample_at: datetime
    sample_rate_hz: float
    samples: list[int]


class _Event(msgspec.Struct):
    """The fields of a dashboard event that latency needs; the rest is ignored."""

    type: str
    recorded_at: datetime | None = None
    started_at: datetime | None = None
    waveform: _Segment | None = None


_event_decoder = msgspec.json.Decoder(_Event)


@dataclass
class Latencies:
    """Send-to-receive latencies in seconds, by kind of event."""

    numerics: list[float] = field(default_factory=list)
    waveform: list[float] = field(default_factory=list)
    alarm: list[float] = field(default_factory=list)

    def extend(self, other: Latencies) -> None:
        self.numerics.extend(other.numerics)
        self.waveform.extend(other.waveform)
        self.alarm.extend(other.alarm)

    @property
    def updates(self) -> list[float]:
        return self.numerics + self.waveform


class Dashboard:
    """One events client watching some patients and timing what it receives."""

    def __init__(self, url: str, token: str, patients: Sequence[str]) -> None:
        self.url = url
        self.token = token
        self.patients = patients
        self.latencies = Latencies()
        self.recording = False
        self.errors = 0
        self._websocket: ClientConnection | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._websocket = await connect(
            self.url,
            additional_headers={"Authorization": f"Bearer {self.token}"},
            open_timeout=30,
            ping_interval=None,
            max_size=None,
            max_queue=None,
        )
        for patient_id in self.patients:
            await self._websocket.send(encode(Subscribe(patient_id=patient_id)).decode())
        confirmed = 0
        while confirmed < len(self.patients):
            event = _event_decoder.decode(await self._websocket.recv())
            if event.type == "subscribed":
                confirmed += 1
            elif event.type == "error":
                raise RuntimeError(
                    "central rejected a benchmark subscription; check the seeded "
                    "assignments"
                )
        self._task = asyncio.create_task(self._receive())

    async def _receive(self) -> None:
        assert self._websocket is not None
        async for frame in self._websocket:
            received = time.time()
            event = _event_decoder.decode(frame)
            if not self.recording:
                continue
            if event.type == "vitals.update" and event.waveform is not None:
                segment = event.waveform
                sent = segment.first_sample_at.timestamp() + (
                    len(segment.samples) / segment.sample_rate_hz
                )
                self.latencies.waveform.append(received - sent)
            elif event.type == "vitals.update" and event.recorded_at is not None:
                self.latencies.numerics.append(received - event.recorded_at.timestamp())
            elif event.type == "patient.emergency" and event.started_at is not None:
                self.latencies.alarm.append(received - event.started_at.timestamp())
            elif event.type == "error":
                self.errors += 1

    async def close(self) -> None:
        if self._websocket is not None:
            await self._websocket.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task


def now_utc() -> datetime:
    return datetime.now(UTC)
