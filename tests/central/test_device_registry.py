"""The device registry over REST: roles, audit, credential rotation, binding, health."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from central_testkit import (
    DEVICE_ID,
    JWT_SECRET,
    PASSWORD,
    Demo,
    LiveServer,
    bearer,
    connect_device,
    numerics,
    receive_json,
)
from websockets.exceptions import ConnectionClosed, InvalidStatus

from central.auth import issue_token
from central.services import Services
from central.users import upsert_user


@pytest.fixture
async def biomed_token(services: Services, demo: Demo) -> str:
    user_id = await upsert_user(
        services.pool, "biomed.eve", "Eve", PASSWORD, ["biomedical_engineer"]
    )
    return issue_token(JWT_SECRET, user_id, services.settings.token_ttl_s)


async def _audit(services: Services, action: str) -> list[dict]:
    rows = await services.pool.fetch(
        "SELECT actor_kind, actor_id, outcome, detail FROM audit_log "
        "WHERE action = $1 ORDER BY id",
        action,
    )
    return [dict(row) for row in rows]


async def _register(
    client: httpx.AsyncClient, token: str, **fields: str
) -> httpx.Response:
    body = {"device_id": "bedside-9", "bed_id": "bed-1", **fields}
    return await client.post("/devices", json=body, headers=bearer(token))


async def test_register_returns_secret_once(
    client: httpx.AsyncClient, services: Services, biomed_token: str
) -> None:
    response = await _register(
        client, biomed_token, serial_number="SN-0042", model="AURA-B1", firmware="1.4.2"
    )
    assert response.status_code == 201
    body = response.json()
    assert body["id"] == "bedside-9"
    assert body["serial_number"] == "SN-0042"
    assert body["model"] == "AURA-B1"
    assert body["firmware"] == "1.4.2"
    assert body["bed_id"] == "bed-1"
    assert body["connected"] is False
    assert len(body["secret"]) >= 40
    shown = await client.get("/devices/bedside-9", headers=bearer(biomed_token))
    assert "secret" not in shown.json()
    stored = await services.pool.fetchval(
        "SELECT secret_hash FROM devices WHERE id = 'bedside-9'"
    )
    assert stored.startswith("$argon2id$")
    audit_text = json.dumps(await _audit(services, "device.register"))
    assert body["secret"] not in audit_text


async def test_register_audited(
    client: httpx.AsyncClient, services: Services, biomed_token: str
) -> None:
    await _register(client, biomed_token)
    rows = await _audit(services, "device.register")
    assert len(rows) == 1
    assert rows[0]["actor_kind"] == "user"
    assert rows[0]["detail"]["device_id"] == "bedside-9"
    assert rows[0]["detail"]["bed_id"] == "bed-1"


async def test_register_duplicate_id_409(
    client: httpx.AsyncClient, biomed_token: str
) -> None:
    response = await _register(client, biomed_token, device_id=DEVICE_ID)
    assert response.status_code == 409
    assert "already registered" in response.json()["error"]


async def test_register_duplicate_serial_409(
    client: httpx.AsyncClient, biomed_token: str
) -> None:
    await _register(client, biomed_token, serial_number="SN-1")
    response = await _register(
        client, biomed_token, device_id="bedside-10", serial_number="SN-1"
    )
    assert response.status_code == 409
    assert "SN-1" in response.json()["error"]


async def test_concurrent_same_serial_one_wins(
    client: httpx.AsyncClient, biomed_token: str
) -> None:
    responses = await asyncio.gather(
        *(
            _register(
                client, biomed_token, device_id=f"bedside-{n}", serial_number="SN-7"
            )
            for n in range(20, 24)
        )
    )
    assert sorted(response.status_code for response in responses) == [
        201,
        409,
        409,
        409,
    ]


INVALID_REGISTRATIONS = [
    ({"bed_id": "bed-404"}, "bed 'bed-404' not found"),
    ({"device_id": "has space"}, "device_id"),
    ({"model": ""}, "model"),
    ({"colour": "red"}, "colour"),
]


async def test_register_invalid_400(
    client: httpx.AsyncClient, biomed_token: str
) -> None:
    for fields, problem in INVALID_REGISTRATIONS:
        response = await _register(client, biomed_token, **fields)
        assert response.status_code == 400, fields
        assert problem in response.json()["error"], fields


async def test_register_body_not_json_400(
    client: httpx.AsyncClient, biomed_token: str
) -> None:
    response = await client.post(
        "/devices", content=b"{not json", headers=bearer(biomed_token)
    )
    assert response.status_code == 400
    assert "must be JSON" in response.json()["error"]


REGISTRY_ROUTES = [
    ("GET", "/devices"),
    ("POST", "/devices"),
    ("GET", f"/devices/{DEVICE_ID}"),
    ("POST", f"/devices/{DEVICE_ID}/credential"),
    ("PUT", f"/devices/{DEVICE_ID}/bed"),
    ("DELETE", f"/devices/{DEVICE_ID}/bed"),
    ("POST", f"/devices/{DEVICE_ID}/retire"),
]


async def test_nurse_refused_403_audited(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    for method, path in REGISTRY_ROUTES:
        response = await client.request(
            method, path, json={"bed_id": "bed-1"}, headers=bearer(demo.ana_token)
        )
        assert response.status_code == 403, path
        assert "biomedical engineers" in response.json()["error"]
    rows = await _audit(services, "device.access")
    assert [row["detail"]["path"] for row in rows] == [p for _, p in REGISTRY_ROUTES]
    assert all(row["outcome"] == "refused" for row in rows)
    assert all(row["actor_id"] == str(demo.ana_id) for row in rows)
    assert services.counters.get("devices.refused") == len(REGISTRY_ROUTES)
    device = await services.pool.fetchrow(
        "SELECT bed_id, retired_at FROM devices WHERE id = $1", DEVICE_ID
    )
    assert device["bed_id"] == "bed-1"
    assert device["retired_at"] is None


async def test_physician_refused_403(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    user_id = await upsert_user(services.pool, "dr.kim", "Kim", PASSWORD, ["physician"])
    token = issue_token(JWT_SECRET, user_id, services.settings.token_ttl_s)
    response = await client.get("/devices", headers=bearer(token))
    assert response.status_code == 403


async def test_unauthenticated_401(client: httpx.AsyncClient, demo: Demo) -> None:
    response = await client.get("/devices")
    assert response.status_code == 401


async def test_admin_may_list(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    admin_id = await upsert_user(services.pool, "admin.ida", "Ida", PASSWORD, ["admin"])
    token = issue_token(JWT_SECRET, admin_id, services.settings.token_ttl_s)
    response = await client.get("/devices", headers=bearer(token))
    assert response.status_code == 200
    assert [device["id"] for device in response.json()["devices"]] == [DEVICE_ID]


async def test_unknown_device_404(client: httpx.AsyncClient, biomed_token: str) -> None:
    for path in ("/devices/nope", "/devices/bad%20id"):
        response = await client.get(path, headers=bearer(biomed_token))
        assert response.status_code == 404


async def test_bind_and_unbind(
    client: httpx.AsyncClient, services: Services, biomed_token: str
) -> None:
    await _register(client, biomed_token, bed_id=None)
    bound = await client.put(
        "/devices/bedside-9/bed", json={"bed_id": "bed-1"}, headers=bearer(biomed_token)
    )
    assert bound.status_code == 200
    assert bound.json()["bed_id"] == "bed-1"
    unbound = await client.delete(
        "/devices/bedside-9/bed", headers=bearer(biomed_token)
    )
    assert unbound.status_code == 200
    assert unbound.json()["bed_id"] is None
    binds = await _audit(services, "device.bind")
    assert binds[0]["detail"] == {
        "device_id": "bedside-9",
        "bed_id": "bed-1",
        "previous_bed_id": None,
    }
    unbinds = await _audit(services, "device.unbind")
    assert unbinds[0]["detail"]["previous_bed_id"] == "bed-1"


async def test_bind_unknown_bed_400(
    client: httpx.AsyncClient, biomed_token: str
) -> None:
    response = await client.put(
        f"/devices/{DEVICE_ID}/bed",
        json={"bed_id": "bed-9"},
        headers=bearer(biomed_token),
    )
    assert response.status_code == 400
    assert "bed 'bed-9' not found" in response.json()["error"]


async def test_retired_device_cannot_change(
    client: httpx.AsyncClient, biomed_token: str
) -> None:
    retired = await client.post(
        f"/devices/{DEVICE_ID}/retire", headers=bearer(biomed_token)
    )
    assert retired.status_code == 200
    assert retired.json()["retired_at"] is not None
    assert retired.json()["bed_id"] is None
    for method, path in (
        ("POST", f"/devices/{DEVICE_ID}/retire"),
        ("POST", f"/devices/{DEVICE_ID}/credential"),
        ("PUT", f"/devices/{DEVICE_ID}/bed"),
    ):
        response = await client.request(
            method, path, json={"bed_id": "bed-1"}, headers=bearer(biomed_token)
        )
        assert response.status_code == 409, path
    listed = await client.get("/devices", headers=bearer(biomed_token))
    assert listed.json()["devices"] == []
    everything = await client.get(
        "/devices?include_retired=true", headers=bearer(biomed_token)
    )
    assert [device["id"] for device in everything.json()["devices"]] == [DEVICE_ID]


async def test_retired_device_cannot_connect(
    live_server: LiveServer, client: httpx.AsyncClient, demo: Demo, biomed_token: str
) -> None:
    await client.post(f"/devices/{DEVICE_ID}/retire", headers=bearer(biomed_token))
    with pytest.raises(InvalidStatus) as caught:
        async with connect_device(live_server, demo):
            pass
    assert caught.value.response.status_code == 401


async def test_rotation_closes_link_and_refuses_old(
    live_server: LiveServer,
    client: httpx.AsyncClient,
    services: Services,
    demo: Demo,
    biomed_token: str,
) -> None:
    async with connect_device(live_server, demo) as device:
        await device.send(numerics(1))
        assert (await receive_json(device))["type"] == "ack"
        shown = await client.get(f"/devices/{DEVICE_ID}", headers=bearer(biomed_token))
        assert shown.json()["connected"] is True
        assert shown.json()["last_seen_at"] is not None
        rotated = await client.post(
            f"/devices/{DEVICE_ID}/credential", headers=bearer(biomed_token)
        )
        assert rotated.status_code == 200
        with pytest.raises(ConnectionClosed) as closed:
            await receive_json(device)
        assert closed.value.rcvd.code == 1008
    new_secret = rotated.json()["secret"]
    with pytest.raises(InvalidStatus) as caught:
        async with connect_device(live_server, demo):
            pass
    assert caught.value.response.status_code == 401
    assert "credential was rotated" in json.loads(caught.value.response.body)["error"]
    assert services.counters.get("ingest.auth_refused.rotated_out") == 1
    refusals = await _audit(services, "device.connect")
    assert refusals[-1]["outcome"] == "refused"
    assert refusals[-1]["detail"]["reason"] == "device credential was rotated out"
    async with connect_device(live_server, demo, secret=new_secret) as device:
        await device.send(numerics(2))
        assert (await receive_json(device))["type"] == "ack"
    assert len(await _audit(services, "device.rotate_credential")) == 1


async def test_wrong_secret_not_reported_as_rotated(
    live_server: LiveServer, client: httpx.AsyncClient, demo: Demo, biomed_token: str
) -> None:
    await client.post(f"/devices/{DEVICE_ID}/credential", headers=bearer(biomed_token))
    with pytest.raises(InvalidStatus) as caught:
        async with connect_device(live_server, demo, secret="a-guessed-secret"):
            pass
    assert (
        json.loads(caught.value.response.body)["error"] == "invalid device credentials"
    )


async def test_battery_from_numerics(
    client: httpx.AsyncClient, services: Services, biomed_token: str
) -> None:
    shown = await client.get(f"/devices/{DEVICE_ID}", headers=bearer(biomed_token))
    assert shown.json()["battery"] is None
    # The protocol has no battery code yet, so the row is written directly.
    async with services.pool.acquire() as connection:
        await connection.execute(
            "INSERT INTO device_messages (device_id, seq, type, device_time)"
            " VALUES ($1, 1, 'vitals.numerics', now())",
            DEVICE_ID,
        )
        await connection.execute(
            "INSERT INTO vitals"
            " (device_id, seq, ordinal, code, value, unit, measured_at)"
            " VALUES ($1, 1, 0, 'MDC_ATTR_VAL_BATT_CHARGE', 64, '%', now())",
            DEVICE_ID,
        )
    shown = await client.get(f"/devices/{DEVICE_ID}", headers=bearer(biomed_token))
    assert shown.json()["battery"]["percent"] == 64
