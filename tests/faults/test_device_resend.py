"""A device resends seqs twice and out of order; each is acknowledged, stored once."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import httpx
import pytest
from fault_rehearsal import running_ward
from websockets.asyncio.client import ClientConnection, connect

from demo.stack import DEVICE_ID, Stack
from protocol.messages import Ack, EcgWaveform, decode_central_message, encode

pytestmark = pytest.mark.timeout(60)

SAMPLES_PER_CHUNK = 90
ACK_TIMEOUT_S = 5.0


def _chunk(seq: int) -> str:
    now = datetime.now(UTC)
    message = EcgWaveform(
        device_id=DEVICE_ID, seq=seq, sent_at=now, lead="MLII", sample_rate_hz=360.0,
        first_sample_at=now, first_sample_index=seq * SAMPLES_PER_CHUNK,
        scale_uv=5.0, samples=[seq] * SAMPLES_PER_CHUNK,
    )
    return encode(message).decode()


async def _acked_seqs(websocket: ClientConnection, expected: int) -> list[int]:
    """Collect acknowledged seqs, duplicates included, until ``expected`` arrived."""
    seqs: list[int] = []
    while len(seqs) < expected:
        reply = decode_central_message(await websocket.recv(ACK_TIMEOUT_S))
        assert isinstance(reply, Ack), f"expected an ack, got {reply!r}"
        seqs.extend(reply.seqs)
    return seqs


async def _stored(database_url: str) -> tuple[list[int], list[int]]:
    connection = await asyncpg.connect(database_url)
    try:
        claimed = await connection.fetch(
            "SELECT seq FROM device_messages WHERE device_id = $1 ORDER BY seq",
            DEVICE_ID,
        )
        chunks = await connection.fetch(
            "SELECT seq FROM waveform_chunks WHERE device_id = $1 ORDER BY seq",
            DEVICE_ID,
        )
    finally:
        await connection.close()
    return [row["seq"] for row in claimed], [row["seq"] for row in chunks]


def _device_socket(ward: Stack) -> connect:
    credential = base64.b64encode(f"{DEVICE_ID}:{ward.device_secret}".encode()).decode()
    return connect(
        ward.ingest_url, additional_headers={"Authorization": f"Basic {credential}"}
    )


async def test_duplicate_and_out_of_order_resend(
    tmp_path: Path, database_url: str
) -> None:
    async with running_ward(tmp_path, database_url) as ward:
        async with _device_socket(ward) as websocket:
            # One at a time: each waits for its ack before the next goes out.
            for seq in (5, 3, 5):
                await websocket.send(_chunk(seq))
                assert await _acked_seqs(websocket, 1) == [seq]
            # All at once, so central may take them into one transaction.
            for seq in (8, 7, 8):
                await websocket.send(_chunk(seq))
            batch_acks = await _acked_seqs(websocket, 3)
        async with httpx.AsyncClient(base_url=ward.base_url) as client:
            counters = (await client.get("/metrics")).json()

    claimed, chunks = await _stored(database_url)
    duplicates = counters.get("ingest.duplicates", 0)
    print(f"device resend: sent 6 messages (seqs 5, 3, 5, 8, 7, 8), stored"
          f" {len(chunks)} chunks, duplicates acknowledged without storing {duplicates}")
    assert sorted(batch_acks) == [7, 8, 8]
    assert claimed == [3, 5, 7, 8]
    assert chunks == [3, 5, 7, 8]
    assert duplicates == 2
