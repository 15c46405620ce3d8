"""The dashboards' events socket: authentication, consent and live relay."""

from __future__ import annotations

import asyncio
import json
import time

import jwt
import pytest
from central_testkit import (
    JWT_SECRET,
    Demo,
    LiveServer,
    connect_device,
    connect_events,
    emergency,
    numerics,
    receive_json,
    waveform,
)
from websockets.exceptions import ConnectionClosed

from central.auth import TOKEN_AUDIENCE, TOKEN_ISSUER
from central.services import Services

SUBSCRIBE = json.dumps({"type": "subscribe", "v": 1, "patient_id": "P-0001"})


async def _audit(services: Services, action: str) -> list[dict]:
    rows = await services.pool.fetch(
        "SELECT actor_id, patient_id, outcome FROM audit_log WHERE action = $1 "
        "ORDER BY id",
        action,
    )
    return [dict(row) for row in rows]


async def _ingest(server: LiveServer, demo: Demo, *frames: str) -> None:
    async with connect_device(server, demo) as device:
        for frame in frames:
            await device.send(frame)
            assert (await receive_json(device))["type"] == "ack"


async def _expect_nothing(socket, seconds: float = 0.3) -> None:
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(socket.recv(), seconds)


async def test_subscribed_client_gets_vitals_and_emergency(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    async with connect_events(live_server, demo.ana_token) as ana:
        await ana.send(SUBSCRIBE)
        assert await receive_json(ana) == {
            "type": "subscribed",
            "v": 1,
            "patient_id": "P-0001",
        }
        await _ingest(live_server, demo, numerics(1, 88.0), emergency(2))
        update = await receive_json(ana)
        alarm = await receive_json(ana)
    assert update["type"] == "vitals.update"
    assert update["patient_id"] == "P-0001"
    assert update["bed"] == "bed-1"
    assert update["measurements"][0] == {
        "code": "MDC_ECG_HEART_RATE",
        "value": 88.0,
        "unit": "/min",
        "quality": None,
    }
    assert alarm["type"] == "patient.emergency"
    assert alarm["kind"] == "tachycardia"
    assert alarm["priority"] == "high"
    rows = await _audit(services, "events.subscribe")
    assert [(r["actor_id"], r["outcome"]) for r in rows] == [(str(demo.ana_id), "ok")]


async def test_waveform_relayed(live_server: LiveServer, demo: Demo) -> None:
    async with connect_events(live_server, demo.ana_token) as ana:
        await ana.send(SUBSCRIBE)
        await receive_json(ana)
        await _ingest(live_server, demo, waveform(1, samples=125))
        update = await receive_json(ana)
    assert update["type"] == "vitals.update"
    assert update["measurements"] == []
    assert update["waveform"]["lead"] == "II"
    assert len(update["waveform"]["samples"]) == 125


async def test_unassigned_client_refused_and_gets_nothing(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    async with (
        connect_events(live_server, demo.ana_token) as ana,
        connect_events(live_server, demo.ben_token) as ben,
    ):
        await ana.send(SUBSCRIBE)
        await receive_json(ana)
        await ben.send(SUBSCRIBE)
        rejection = await receive_json(ben)
        await _ingest(live_server, demo, numerics(1), emergency(2))
        assert (await receive_json(ana))["type"] == "vitals.update"
        assert (await receive_json(ana))["type"] == "patient.emergency"
        await _expect_nothing(ben)
    assert rejection["type"] == "error"
    assert rejection["status"] == 403
    assert rejection["patient_id"] == "P-0001"
    rows = await _audit(services, "events.subscribe")
    rejected_rows = [r for r in rows if r["outcome"] == "refused"]
    assert rejected_rows == [
        {"actor_id": str(demo.ben_id), "patient_id": "P-0001", "outcome": "refused"}
    ]


async def test_duplicates_not_republished(live_server: LiveServer, demo: Demo) -> None:
    async with connect_events(live_server, demo.ana_token) as ana:
        await ana.send(SUBSCRIBE)
        await receive_json(ana)
        await _ingest(live_server, demo, numerics(1), numerics(1))
        assert (await receive_json(ana))["type"] == "vitals.update"
        await _expect_nothing(ana)


async def test_auth_by_first_message(live_server: LiveServer, demo: Demo) -> None:
    async with connect_events(live_server) as client:
        await client.send(json.dumps({"type": "auth", "v": 1, "token": demo.ana_token}))
        await client.send(SUBSCRIBE)
        assert (await receive_json(client))["type"] == "subscribed"


async def test_unsubscribe_stops_events(live_server: LiveServer, demo: Demo) -> None:
    async with connect_events(live_server, demo.ana_token) as ana:
        await ana.send(SUBSCRIBE)
        await receive_json(ana)
        await ana.send(
            json.dumps({"type": "unsubscribe", "v": 1, "patient_id": "P-0001"})
        )
        await _ingest(live_server, demo, numerics(1))
        await _expect_nothing(ana)


def _expired_token(user_id: int) -> str:
    now = int(time.time())
    claims = {
        "sub": str(user_id),
        "iss": TOKEN_ISSUER,
        "aud": TOKEN_AUDIENCE,
        "iat": now - 600,
        "exp": now - 60,
    }
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


@pytest.mark.parametrize("mode", ["header", "message"])
async def test_bad_token_401_then_close(
    live_server: LiveServer, demo: Demo, services: Services, mode: str
) -> None:
    token = _expired_token(demo.ana_id)
    header_token = token if mode == "header" else None
    async with connect_events(live_server, header_token) as client:
        if mode == "message":
            await client.send(json.dumps({"type": "auth", "v": 1, "token": token}))
        error = await receive_json(client)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(client.recv(), 5)
    assert error["type"] == "error"
    assert error["status"] == 401
    assert "expired" in error["message"]
    assert client.close_code == 1008
    rows = await _audit(services, "access")
    assert [r["outcome"] for r in rows] == ["refused"]


async def test_subscribe_before_auth_401(live_server: LiveServer, demo: Demo) -> None:
    async with connect_events(live_server) as client:
        await client.send(SUBSCRIBE)
        error = await receive_json(client)
    assert error["status"] == 401
    assert "not authenticated" in error["message"]


async def test_malformed_request_400_keeps_open(
    live_server: LiveServer, demo: Demo
) -> None:
    async with connect_events(live_server, demo.ana_token) as ana:
        await ana.send(json.dumps({"type": "subscribe", "v": 1}))
        error = await receive_json(ana)
        await ana.send(SUBSCRIBE)
        subscribed = await receive_json(ana)
    assert error["status"] == 400
    assert "patient_id" in error["message"]
    assert subscribed["type"] == "subscribed"


async def test_disabled_user_closed_on_subscribe(
    live_server: LiveServer, demo: Demo, services: Services
) -> None:
    async with connect_events(live_server, demo.ana_token) as ana:
        await ana.send(SUBSCRIBE)
        await receive_json(ana)
        await services.pool.execute(
            "UPDATE users SET disabled_at = now() WHERE id = $1", demo.ana_id
        )
        await ana.send(SUBSCRIBE)
        error = await receive_json(ana)
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ana.recv(), 5)
    assert error["status"] == 401
    assert "not an active user" in error["message"]


async def test_ended_assignment_stops_stream(
    live_server: LiveServer, demo: Demo, services: Services,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("central.events.CONSENT_RECHECK_S", 0.2)
    async with connect_events(live_server, demo.ana_token) as ana:
        await ana.send(SUBSCRIBE)
        assert (await receive_json(ana))["type"] == "subscribed"
        await services.pool.execute(
            "UPDATE assignments SET ends_at = now() WHERE user_id = $1", demo.ana_id
        )
        ended = await asyncio.wait_for(receive_json(ana), 5)
        assert ended["type"] == "error"
        assert ended["status"] == 403
        await _ingest(live_server, demo, numerics(1))
        await _expect_nothing(ana)
    refusals = await _audit(services, "events.subscription_ended")
    assert [row["outcome"] for row in refusals] == ["refused"]


async def test_expired_token_closes_open_stream(
    live_server: LiveServer, demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("central.events.CONSENT_RECHECK_S", 0.2)
    monkeypatch.setattr("central.auth.CLOCK_LEEWAY_S", 0)
    now = int(time.time())
    claims = {"sub": str(demo.ana_id), "iss": TOKEN_ISSUER, "aud": TOKEN_AUDIENCE,
              "iat": now, "exp": now + 1}
    short_lived = jwt.encode(claims, JWT_SECRET, algorithm="HS256")
    async with connect_events(live_server, short_lived) as ana:
        await ana.send(SUBSCRIBE)
        assert (await receive_json(ana))["type"] == "subscribed"
        closing = await asyncio.wait_for(receive_json(ana), 5)
        assert closing["type"] == "error"
        assert closing["status"] == 401
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ana.recv(), 5)
