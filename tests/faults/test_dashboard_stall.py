"""One dashboard stops reading its socket while 50 others keep up.

The stalled client is a raw TCP WebSocket with a small receive buffer that never
reads after subscribing, so central's sends to it block. Besides the agent's stream
of record 100, a second device in the same bed floods waveform chunks, so the
stalled client's queue overflows within seconds. The 50 others must still get every
numerics update, ingest must store every sample, and /health must stay 200.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import struct
import subprocess
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from fault_rehearsal import (
    assert_intact,
    finish_and_audit,
    running_ward,
    start_streaming,
    wait_for,
)
from websockets.asyncio.client import ClientConnection, connect

from demo.stack import ASSIGNED_NURSE, DEVICE_ID, PATIENT_ID, Stack, _command
from protocol.messages import (
    EcgWaveform,
    PatientEmergency,
    Subscribe,
    Subscribed,
    VitalsUpdate,
    decode_server_event,
    encode,
)

pytestmark = pytest.mark.timeout(120)

CLIENTS = 50
SPEED = 10.0
STREAM_S = 8.0
STALLED_RECEIVE_BUFFER_BYTES = 4096
# Linux sizes a connection's first send buffer from its MSS, about 64 kB on
# loopback, which would let central park megabytes for the stalled client. A small
# MSS keeps that buffer to tens of kB, so the stall reaches central's queue quickly.
STALLED_MSS_BYTES = 536
DRAIN_TIMEOUT_S = 15.0
HEALTH_TIMEOUT_S = 5.0
FLOOD_DEVICE_ID = "bed-1-flood"
FLOOD_BED = "bed-1"
FLOOD_SAMPLES = 1000
FLOOD_INTERVAL_S = 0.01  # 100 chunks per second, each about 2 kB of JSON


def _masked_text_frame(text: bytes) -> bytes:
    # RFC 6455 section 5.2: a client masks every frame; 126 means a 16-bit length.
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[i % 4] for i, byte in enumerate(text))
    if len(text) < 126:
        header = struct.pack("!BB", 0x81, 0x80 | len(text))
    else:
        header = struct.pack("!BBH", 0x81, 0x80 | 126, len(text))
    return header + mask + masked


def _open_stalled_client(ward: Stack, token: str) -> socket.socket:
    """Upgrade a raw socket to /events, subscribe, and return it unread."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, STALLED_RECEIVE_BUFFER_BYTES)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, STALLED_MSS_BYTES)
    sock.settimeout(HEALTH_TIMEOUT_S)
    sock.connect(("127.0.0.1", ward.port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(
        (
            f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{ward.port}\r\n"
            "Upgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Authorization: Bearer {token}\r\n\r\n"
        ).encode()
    )
    response = b""
    while not response.endswith(b"\r\n\r\n"):
        # One byte at a time, so no WebSocket frame after the headers is consumed.
        response += sock.recv(1)
    assert response.startswith(b"HTTP/1.1 101"), response
    sock.sendall(_masked_text_frame(encode(Subscribe(patient_id=PATIENT_ID))))
    return sock


def _register_flood_device(ward: Stack) -> str:
    """Register a second device in the patient's bed; return its secret."""
    result = subprocess.run(
        _command("central.cli") + ["devices", "register", FLOOD_DEVICE_ID,
                                   f"--bed={FLOOD_BED}"],
        env=ward.central_environment(), capture_output=True, check=True,
    )
    secret: str = json.loads(result.stdout.splitlines()[-1])["secret"]
    return secret


async def _flood(ward: Stack, secret: str, duration_s: float) -> int:
    """Send waveform chunks as fast as FLOOD_INTERVAL_S allows; return the count."""
    credential = base64.b64encode(f"{FLOOD_DEVICE_ID}:{secret}".encode()).decode()
    headers = {"Authorization": f"Basic {credential}"}
    async with connect(ward.ingest_url, additional_headers=headers) as websocket:
        # Acks must be read, or the client stops reading and central's ingest stalls.
        acks = asyncio.create_task(_discard_incoming(websocket))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + duration_s
        sent = 0
        while loop.time() < deadline:
            now = datetime.now(UTC)
            chunk = EcgWaveform(
                device_id=FLOOD_DEVICE_ID, seq=sent + 1, sent_at=now, lead="MLII",
                sample_rate_hz=360.0, first_sample_at=now,
                first_sample_index=sent * FLOOD_SAMPLES, scale_uv=5.0,
                samples=[0] * FLOOD_SAMPLES,
            )
            await websocket.send(encode(chunk).decode())
            sent += 1
            await asyncio.sleep(FLOOD_INTERVAL_S)
        acks.cancel()
    return sent


async def _discard_incoming(websocket: ClientConnection) -> None:
    async for _ in websocket:
        pass


async def _subscribed_client(ward: Stack, token: str) -> ClientConnection:
    websocket = await connect(
        ward.events_url, additional_headers={"Authorization": f"Bearer {token}"}
    )
    await websocket.send(encode(Subscribe(patient_id=PATIENT_ID)).decode())
    while not isinstance(decode_server_event(await websocket.recv()), Subscribed):
        pass
    return websocket


async def _count_events(websocket: ClientConnection, counts: Counter[str]) -> None:
    async for frame in websocket:
        event = decode_server_event(frame)
        if isinstance(event, VitalsUpdate) and event.device_id == FLOOD_DEVICE_ID:
            counts["flood"] += 1
        elif isinstance(event, VitalsUpdate):
            counts["waveform" if event.waveform is not None else "numerics"] += 1
        elif isinstance(event, PatientEmergency):
            counts["emergency"] += 1


async def _published_counts(database_url: str) -> tuple[int, int]:
    connection = await asyncpg.connect(database_url)
    try:
        numerics = await connection.fetchval(
            "SELECT count(DISTINCT seq) FROM vitals WHERE device_id = $1", DEVICE_ID
        )
        emergencies = await connection.fetchval(
            "SELECT count(*) FROM alarms WHERE device_id = $1", DEVICE_ID
        )
    finally:
        await connection.close()
    return int(numerics), int(emergencies)


async def _health(ward: Stack) -> tuple[int, dict[str, int]]:
    async with httpx.AsyncClient(base_url=ward.base_url, timeout=HEALTH_TIMEOUT_S) as client:
        response = await client.get("/health")
    return response.status_code, response.json()["counters"]


async def test_stalled_dashboard_spares_others(
    tmp_path: Path, database_url: str
) -> None:
    async with running_ward(tmp_path, database_url, speed=SPEED) as ward:
        token = await asyncio.to_thread(ward.login, ASSIGNED_NURSE)
        flood_secret = await asyncio.to_thread(_register_flood_device, ward)
        stalled = await asyncio.to_thread(_open_stalled_client, ward, token)
        clients = [await _subscribed_client(ward, token) for _ in range(CLIENTS)]
        counts = [Counter[str]() for _ in clients]
        readers = [
            asyncio.create_task(_count_events(websocket, count))
            for websocket, count in zip(clients, counts)
        ]
        try:
            await start_streaming(ward)
            flooded = await _flood(ward, flood_secret, STREAM_S)
            health_during, _ = await _health(ward)

            async def flood_delivered() -> bool:
                return all(c["flood"] >= flooded for c in counts)

            # The board closes its line on stop without waiting for the agent to read
            # it, so it is stopped only once the flood no longer loads the machine.
            await wait_for(flood_delivered, DRAIN_TIMEOUT_S, "the flood delivered")
            audit = await finish_and_audit(ward, database_url, "dashboard stall")
            numerics, emergencies = await _published_counts(database_url)

            async def all_delivered() -> bool:
                return all(
                    c["numerics"] >= numerics and c["emergency"] >= emergencies
                    for c in counts
                )

            await wait_for(all_delivered, DRAIN_TIMEOUT_S, "every client's numerics")
            health_after, counters = await _health(ward)
        finally:
            for reader in readers:
                reader.cancel()
            for websocket in clients:
                await websocket.close()
            stalled.close()

    waveforms = sorted(c["waveform"] + c["flood"] for c in counts)
    print(f"dashboard stall: a second device flooded {flooded} waveform chunks")
    print(f"dashboard stall: {CLIENTS} clients each got {numerics} numerics and"
          f" {emergencies} emergency updates, {waveforms[0]} to {waveforms[-1]}"
          f" waveform updates; stalled client: {counters.get('events.waveform_dropped', 0)}"
          f" waveform updates dropped, closed as too slow"
          f" {counters.get('events.clients_closed_slow', 0)} times")
    assert health_during == 200
    assert health_after == 200
    assert numerics > 0
    assert counters.get("events.waveform_dropped", 0) > 0, "the stalled client never stalled"
    for count in counts:
        assert count["numerics"] == numerics
        assert count["emergency"] == emergencies
    assert_intact(audit)
