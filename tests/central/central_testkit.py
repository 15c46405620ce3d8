"""Helpers for central tests: demo credentials, WebSocket clients, message builders.

Named distinctly so it cannot clash with helper modules of other test packages.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import uvicorn
from starlette.applications import Starlette
from websockets.asyncio.client import ClientConnection, connect

from protocol.messages import (
    EcgWaveform,
    Emergency,
    Measurement,
    VitalsNumerics,
    encode,
)

# 64 bytes, so an HS512 token signed with the same secret raises no key-length warning.
JWT_SECRET = "test-signing-secret-" + "0123456789abcdef" * 2 + "-padding-to-64b"
DEVICE_ID = "monitor-1"
DEVICE_SECRET = "device-secret-for-tests"
PASSWORD = "correct horse battery staple"


@dataclass
class Demo:
    """Ids and ready-made credentials of the seeded demo data."""

    patient_id: str
    bed_id: str
    ana_id: int
    ben_id: int
    ana_token: str
    ben_token: str
    device_id: str = DEVICE_ID
    device_secret: str = DEVICE_SECRET

    def device_headers(self, secret: str | None = None) -> dict[str, str]:
        raw = f"{self.device_id}:{secret or self.device_secret}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


@dataclass
class LiveServer:
    """The app served by uvicorn on a free port of 127.0.0.1."""

    app: Starlette
    port: int

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def ws_url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"


@asynccontextmanager
async def run_uvicorn(app: Starlette) -> AsyncIterator[LiveServer]:
    """Serve ``app`` with uvicorn on a free port of 127.0.0.1, without its lifespan.

    The caller runs the lifespan, so uvicorn must not run it a second time.
    """
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        lifespan="off",
        log_config=None,
        ws_ping_interval=None,
    )
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn exited before it started")
        await asyncio.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield LiveServer(app, port)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def utc_now() -> datetime:
    return datetime.now(UTC)


def numerics(
    seq: int,
    heart_rate: float = 72.0,
    device_id: str = DEVICE_ID,
    measured_at: datetime | None = None,
) -> str:
    """Return one vitals.numerics frame with heart rate and SpO2."""
    at = measured_at or utc_now()
    message = VitalsNumerics(
        device_id=device_id,
        seq=seq,
        sent_at=at,
        measured_at=at,
        measurements=[
            Measurement(code="MDC_ECG_HEART_RATE", value=heart_rate, unit="/min"),
            Measurement(code="MDC_PULS_OXIM_SAT_O2", value=97.0, unit="%"),
        ],
    )
    return encode(message).decode()


def waveform(seq: int, first_sample_index: int = 0, samples: int = 250) -> str:
    """Return one vitals.waveform frame of lead II at 250 Hz."""
    at = utc_now()
    message = EcgWaveform(
        device_id=DEVICE_ID,
        seq=seq,
        sent_at=at,
        lead="II",
        sample_rate_hz=250.0,
        first_sample_at=at - timedelta(seconds=samples / 250.0),
        first_sample_index=first_sample_index,
        scale_uv=5.0,
        samples=[(i * 37) % 400 - 200 for i in range(samples)],
    )
    return encode(message).decode()


def emergency(seq: int, state: str = "raised") -> str:
    """Return one patient.emergency frame for a high-priority tachycardia."""
    at = utc_now()
    message = Emergency(
        device_id=DEVICE_ID,
        seq=seq,
        sent_at=at,
        alarm_id="alarm-1",
        kind="tachycardia",
        priority="high",
        state=state,
        started_at=at,
        evidence="heart rate 182 /min for 10 s",
    )
    return encode(message).decode()


def with_field(frame: str, **changes: Any) -> str:
    """Return ``frame`` with top-level JSON fields replaced, to build bad messages."""
    data = json.loads(frame)
    data.update(changes)
    return json.dumps(data)


def connect_device(
    server: LiveServer, demo: Demo, secret: str | None = None
) -> connect:
    """Open /ingest as the demo device (or with another secret); use with async with."""
    return connect(
        server.ws_url("/ingest"),
        additional_headers=demo.device_headers(secret),
        proxy=None,
        open_timeout=5,
    )


def connect_events(server: LiveServer, token: str | None = None) -> connect:
    """Open /events, with a bearer header when ``token`` is given."""
    headers = bearer(token) if token is not None else None
    return connect(
        server.ws_url("/events"),
        additional_headers=headers,
        proxy=None,
        open_timeout=5,
    )


async def receive_json(
    socket: ClientConnection, timeout: float = 5.0
) -> dict[str, Any]:
    """Receive one text frame within ``timeout`` seconds and decode it as JSON."""
    raw = await asyncio.wait_for(socket.recv(decode=True), timeout)
    return msgspec.json.decode(raw)
