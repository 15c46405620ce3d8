"""The whole chain as separate processes: board on a pty, agent, central, a nurse.

Central runs on a fresh database of the session's embedded PostgreSQL. The board
replays record 100 at 10x with a forced flat line, and central is stopped and started
mid-stream; afterwards every sample the board sent must be stored exactly once.
"""

from __future__ import annotations

import asyncio
import base64
import re
import signal
import time
from collections.abc import AsyncIterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import asyncpg
import httpx
import jwt
import pytest
from websockets.asyncio.client import connect

from demo.stack import (
    ASSIGNED_NURSE,
    DEVICE_ID,
    PATIENT_ID,
    UNASSIGNED_NURSE,
    Stack,
)
from protocol.messages import (
    Authenticate,
    ErrorEvent,
    PatientEmergency,
    Rejected,
    Subscribe,
    Subscribed,
    VitalsUpdate,
    decode_central_message,
    decode_server_event,
    encode,
)

pytestmark = pytest.mark.timeout(240)

SPEED = 10.0
FLATLINE_AT_S = 30.0  # record time; asystole is due 4 s after the last beat before it
FLATLINE_FOR_S = 8.0
STARTUP_ALLOWANCE_S = 2.0  # wall time for the agent to open the board's port
SENT_LINE = re.compile(r"sent (\d+) frames, (\d+) samples")


@pytest.fixture
async def stack(tmp_path: Path, database_url: str) -> AsyncIterator[Stack]:
    ward = Stack(
        workdir=tmp_path, speed=SPEED, flatline_at_s=FLATLINE_AT_S,
        flatline_for_s=FLATLINE_FOR_S, database_url=database_url,
    )
    await asyncio.to_thread(ward.seed)
    await asyncio.to_thread(ward.start_central)
    try:
        yield ward
    finally:
        await asyncio.to_thread(ward.stop_all)


async def collect_events(stack: Stack, token: str, events: list[object]) -> None:
    async with connect(stack.events_url) as websocket:
        await websocket.send(encode(Authenticate(token=token)).decode())
        await websocket.send(encode(Subscribe(patient_id=PATIENT_ID)).decode())
        async for frame in websocket:
            event = decode_server_event(frame)
            events.append(event)
            if isinstance(event, ErrorEvent):
                return


async def wait_for(predicate, timeout_s: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await predicate():
            return
        await asyncio.sleep(0.2)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


def board_sent_samples(stack: Stack) -> int:
    text = (stack.workdir / "logs" / "board.log").read_text()
    matches = SENT_LINE.findall(text)
    assert matches, f"board printed no summary line:\n{text[-2000:]}"
    return int(matches[-1][1])


async def stored_chunks(database_url: str) -> list[tuple[int, int]]:
    connection = await asyncpg.connect(database_url)
    try:
        rows = await connection.fetch(
            "SELECT first_sample_index, cardinality(samples) AS n FROM waveform_chunks"
            " WHERE device_id = $1 ORDER BY first_sample_index",
            DEVICE_ID,
        )
    finally:
        await connection.close()
    return [(row["first_sample_index"], row["n"]) for row in rows]


async def test_record_reaches_nurse_and_survives_central_restart(
    stack: Stack, database_url: str
) -> None:
    token = await asyncio.to_thread(stack.login, ASSIGNED_NURSE)
    events: list[object] = []
    watcher = asyncio.create_task(collect_events(stack, token, events))
    await wait_for(lambda: _has(events, Subscribed), 10, "the subscription")

    await asyncio.to_thread(stack.start_board)
    stack.start_agent()

    def heart_rates() -> list[float]:
        return [m.value for e in events if isinstance(e, VitalsUpdate)
                for m in e.measurements if m.code == "MDC_ECG_HEART_RATE"]

    async def has_heart_rate() -> bool:
        return len(heart_rates()) >= 3

    await wait_for(has_heart_rate, 30, "heart rate on the nurse's stream")
    assert all(60 <= rate <= 90 for rate in heart_rates()), heart_rates()

    async def has_asystole() -> bool:
        return any(isinstance(e, PatientEmergency) and e.kind == "asystole"
                   and e.state == "raised" for e in events)

    await wait_for(has_asystole, 30, "the asystole emergency")
    emergency = next(
        e for e in events if isinstance(e, PatientEmergency) and e.kind == "asystole"
    )
    assert emergency.priority == "high"
    assert emergency.patient_id == PATIENT_ID

    # Central goes away mid-stream; the agent keeps buffering and resends later.
    # uvicorn re-raises SIGTERM after its graceful shutdown, so -15 is a clean stop.
    assert await asyncio.to_thread(stack.stop, "central") in (0, -signal.SIGTERM)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    await asyncio.sleep(3)
    await asyncio.to_thread(stack.start_central)
    await asyncio.sleep(3)
    assert await asyncio.to_thread(stack.stop, "board") == 0
    sent = board_sent_samples(stack)

    async def last_sample_stored() -> bool:
        chunks = await stored_chunks(database_url)
        return bool(chunks) and chunks[-1][0] + chunks[-1][1] >= sent

    await wait_for(last_sample_stored, 60, f"sample {sent - 1} stored at central")
    chunks = await stored_chunks(database_url)
    for (first, count), (following, _) in zip(chunks, chunks[1:]):
        assert following == first + count, f"gap or overlap after sample {first}"
    # pyserial empties the input queue when it opens a port, so what the board sent
    # before the agent first opened it never reached anyone; from then on, nothing.
    first_stored = chunks[0][0]
    assert first_stored < STARTUP_ALLOWANCE_S * SPEED * 360
    stored = sum(n for _, n in chunks)
    assert stored == sent - first_stored, (
        f"board sent {sent - first_stored} samples after the agent opened the port,"
        f" central stored {stored}"
    )


async def test_unassigned_nurse_refused_everywhere(stack: Stack, database_url: str) -> None:
    token = await asyncio.to_thread(stack.login, UNASSIGNED_NURSE)
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=stack.base_url, headers=headers) as client:
        for path in (f"/patients/{PATIENT_ID}", f"/patients/{PATIENT_ID}/vitals",
                     f"/patients/{PATIENT_ID}/history"):
            response = await client.get(path)
            assert response.status_code == 403, path
            assert PATIENT_ID in response.text

    events: list[object] = []
    await asyncio.wait_for(collect_events(stack, token, events), 10)
    refusal = events[-1]
    assert isinstance(refusal, ErrorEvent)
    assert refusal.status == 403

    connection = await asyncpg.connect(database_url)
    try:
        refused = await connection.fetchval(
            "SELECT count(*) FROM audit_log a JOIN users u ON a.actor_id = u.id::text"
            " WHERE u.username = $1 AND a.patient_id = $2 AND a.outcome = 'refused'",
            UNASSIGNED_NURSE, PATIENT_ID,
        )
    finally:
        await connection.close()
    assert refused >= 4


async def test_reads_are_audited(stack: Stack, database_url: str) -> None:
    token = await asyncio.to_thread(stack.login, ASSIGNED_NURSE)
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        response = await client.get(
            f"/patients/{PATIENT_ID}/vitals", headers={"Authorization": f"Bearer {token}"}
        )
    assert response.status_code == 200
    connection = await asyncpg.connect(database_url)
    try:
        actions = await connection.fetch(
            "SELECT a.action FROM audit_log a JOIN users u ON a.actor_id = u.id::text"
            " WHERE u.username = $1 AND a.patient_id = $2 AND a.outcome = 'ok'",
            ASSIGNED_NURSE, PATIENT_ID,
        )
    finally:
        await connection.close()
    assert "vitals.read" in {row["action"] for row in actions}


async def test_forged_and_expired_tokens_rejected(stack: Stack) -> None:
    now = datetime.now(timezone.utc)
    forged = jwt.encode({"sub": "1", "iat": now, "exp": now + timedelta(minutes=5)},
                        "not-the-server-key-" * 3, algorithm="HS256")
    genuine = await asyncio.to_thread(stack.login, ASSIGNED_NURSE)
    claims = jwt.decode(genuine, options={"verify_signature": False})
    claims.update(iat=now - timedelta(hours=2), exp=now - timedelta(hours=1))
    expired = jwt.encode(claims, stack.jwt_secret, algorithm="HS256")
    async with httpx.AsyncClient(base_url=stack.base_url) as client:
        for token in (forged, expired, "not.a.token"):
            response = await client.get(
                "/auth/me", headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 401
            assert response.json()["error"]


async def test_malformed_device_message_rejected_and_nothing_lost(
    stack: Stack, database_url: str
) -> None:
    credential = base64.b64encode(f"{DEVICE_ID}:{stack.device_secret}".encode()).decode()
    good = (
        '{"type":"vitals.numerics","v":1,"device_id":"%s","seq":%d,'
        '"sent_at":"2026-01-01T00:00:00Z","measured_at":"2026-01-01T00:00:00Z",'
        '"measurements":[{"code":"MDC_ECG_HEART_RATE","value":71,"unit":"/min"}]}'
    )
    async with connect(f"ws://127.0.0.1:{stack.port}/ingest",
                       additional_headers={"Authorization": f"Basic {credential}"}) as ws:
        await ws.send(good % (DEVICE_ID, 900))
        assert decode_central_message(await ws.recv()).seqs == [900]  # type: ignore[union-attr]
        await ws.send((good % (DEVICE_ID, 901)).replace('"/min"', '"bpm"'))
        reply = decode_central_message(await ws.recv())
        assert isinstance(reply, Rejected)
        assert reply.seq == 901
        assert reply.field == "measurements[0].unit"
        await ws.send(good % (DEVICE_ID, 902))
        assert decode_central_message(await ws.recv()).seqs == [902]  # type: ignore[union-attr]

    connection = await asyncpg.connect(database_url)
    try:
        stored = await connection.fetch(
            "SELECT seq FROM vitals WHERE device_id = $1 ORDER BY seq", DEVICE_ID
        )
    finally:
        await connection.close()
    assert [row["seq"] for row in stored] == [900, 902]


def _has(events: list[object], kind: type) -> "asyncio.Future[bool]":
    future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
    future.set_result(any(isinstance(event, kind) for event in events))
    return future
