"""Every route and every subscription refuses a user who may not read the patient.

The routes are enumerated from the application, so a route added later is walked
too. A route that reads no patient's data must be named in ``NOT_PATIENT_READS``
with the reason. Every other route must reject an unassigned nurse with 403 or 404.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from central_testkit import (
    DEVICE_ID,
    Demo,
    LiveServer,
    bearer,
    connect_events,
    emergency,
    numerics,
    receive_json,
)
from starlette.applications import Starlette
from starlette.routing import Mount, Route, WebSocketRoute
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from central.services import Services
from central.storage import store_batch
from protocol.messages import decode_device_message

PATIENT_NAME = "Demo Patient One"
# An unusual heart rate, so finding it in a response means the vitals leaked.
LEAK_MARKER_HEART_RATE = 123.25

# (method, path) -> why the route is not a read of one patient's record.
NOT_PATIENT_READS: dict[tuple[str, str], str] = {
    ("GET", "/health"): "database state and counters only",
    ("GET", "/metrics"): "counters only",
    ("POST", "/auth/login"): "exchanges a password for a token",
    ("GET", "/auth/me"): "the caller's own profile and assignments",
    ("GET", "/patients"): "lists only the patients the caller may read",
    ("GET", "/care/ward"): "ranks only the patients the caller may read",
    ("POST", "/admissions"): "admits from the request body; see test_admissions",
    ("POST", "/patients/{patient_id}/break-the-glass"): (
        "opens access only with a stated reason; see test_break_glass"
    ),
    ("POST", "/chat/threads"): "names the patient in the body; see test_chat",
    ("GET", "/chat/threads"): "names the patient in the query; see test_chat",
    ("GET", "/"): "redirects to the dashboard's static files",
    ("PUT", "/chat/keys"): "publishes the caller's own public chat keys",
    ("GET", "/chat/keys/{key_id}"): "a clinician's public chat key, no patient data",
    ("GET", "/openapi.json"): "describes the routes, no data",
    ("GET", "/fhir/Observation"): "names the patient in the query; see test_fhir",
    ("GET", "/fhir/DetectedIssue"): "names the patient in the query; see test_fhir",
}
PUBLIC = {
    ("GET", "/health"),
    ("GET", "/metrics"),
    ("POST", "/auth/login"),
    # The dashboard page itself contains no data. It logs in before it reads anything.
    ("GET", "/"),
    # The route description is public, like the API documentation it generates.
    ("GET", "/openapi.json"),
}


@dataclass(frozen=True)
class Call:
    method: str
    template: str
    path: str


def _fill(route_path: str, names: Iterator[str], patient_id: str) -> str:
    values = {
        name: patient_id if "patient" in name or name == "id" else "1" for name in names
    }
    return route_path.format(**values)


def _http_calls(routes: list, prefix: str, patient_id: str) -> Iterator[Call]:
    for route in routes:
        if isinstance(route, Route):
            template = prefix + route.path_format
            path = _fill(template, iter(route.param_convertors), patient_id)
            for method in sorted(route.methods or {"GET"}):
                if method != "HEAD":
                    yield Call(method, template, path)
        elif isinstance(route, Mount):
            # A static-file mount has no routes and serves no patient data.
            yield from _http_calls(route.routes, prefix + route.path, patient_id)


def _websocket_paths(app: Starlette) -> list[str]:
    return [route.path for route in app.routes if isinstance(route, WebSocketRoute)]


async def _store_marked_data(services: Services) -> None:
    frames = [numerics(1, LEAK_MARKER_HEART_RATE), emergency(2)]
    messages = [decode_device_message(frame) for frame in frames]
    await store_batch(services.pool, DEVICE_ID, messages)


async def _send(
    client: httpx.AsyncClient, call: Call, headers: dict[str, str]
) -> httpx.Response:
    body = None if call.method in ("GET", "DELETE") else {}
    return await client.request(call.method, call.path, json=body, headers=headers)


async def test_every_route_refuses_unassigned_user(
    app: Starlette, client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    await _store_marked_data(services)
    calls = list(_http_calls(app.routes, "", demo.patient_id))
    assert len(calls) >= len(NOT_PATIENT_READS)
    walked = set()
    for call in calls:
        walked.add((call.method, call.template))
        response = await _send(client, call, bearer(demo.ben_token))
        where = f"{call.method} {call.path} -> {response.status_code} {response.text}"
        assert PATIENT_NAME not in response.text, where
        assert str(LEAK_MARKER_HEART_RATE) not in response.text, where
        assert response.status_code < 500, where
        if (call.method, call.template) not in NOT_PATIENT_READS:
            assert response.status_code in (403, 404), where
    # A stale entry would let a renamed route slip through unchecked.
    assert set(NOT_PATIENT_READS) <= walked


async def test_every_route_needs_token(
    app: Starlette, client: httpx.AsyncClient, demo: Demo
) -> None:
    for call in _http_calls(app.routes, "", demo.patient_id):
        if (call.method, call.template) in PUBLIC:
            continue
        response = await _send(client, call, {})
        assert response.status_code == 401, f"{call.method} {call.path}"


async def test_refusals_are_audited(
    app: Starlette, client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    calls = [
        call
        for call in _http_calls(app.routes, "", demo.patient_id)
        if "{patient_id}" in call.template
        and (call.method, call.template) not in NOT_PATIENT_READS
    ]
    assert calls
    for call in calls:
        before = await services.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE outcome = 'refused' "
            "AND actor_id = $1 AND patient_id = $2",
            str(demo.ben_id),
            demo.patient_id,
        )
        await _send(client, call, bearer(demo.ben_token))
        after = await services.pool.fetchval(
            "SELECT count(*) FROM audit_log WHERE outcome = 'refused' "
            "AND actor_id = $1 AND patient_id = $2",
            str(demo.ben_id),
            demo.patient_id,
        )
        assert after == before + 1, f"{call.method} {call.path}"


async def test_every_websocket_refuses_unassigned_user(
    app: Starlette, live_server: LiveServer, demo: Demo
) -> None:
    paths = _websocket_paths(app)
    assert "/events" in paths
    for path in paths:
        if path == "/events":
            async with connect_events(live_server, demo.ben_token) as socket:
                subscribe = {"type": "subscribe", "v": 1, "patient_id": demo.patient_id}
                await socket.send(json.dumps(subscribe))
                reply = await receive_json(socket)
            assert reply["type"] == "error"
            assert reply["status"] == 403
            assert reply["patient_id"] == demo.patient_id
        elif path == "/ingest":
            # Devices authenticate with their own credentials, so a user token is
            # rejected there.
            with pytest.raises(InvalidStatus) as caught:
                async with connect(
                    live_server.ws_url(path),
                    additional_headers=bearer(demo.ben_token),
                    proxy=None,
                    open_timeout=5,
                ):
                    pass
            assert caught.value.response.status_code == 401
        else:
            pytest.fail(
                f"WebSocket route {path} is not covered: add how it refuses a user "
                "who may not read the patient"
            )


async def test_assigned_nurse_token_refused_on_ingest(
    live_server: LiveServer, demo: Demo
) -> None:
    with pytest.raises(InvalidStatus) as caught:
        async with connect(
            live_server.ws_url("/ingest"),
            additional_headers=bearer(demo.ana_token),
            proxy=None,
            open_timeout=5,
        ):
            pass
    assert caught.value.response.status_code == 401
