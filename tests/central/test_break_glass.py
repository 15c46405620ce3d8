"""Patient restrictions, break-the-glass access and its review."""

from __future__ import annotations

import logging
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from central_testkit import (
    JWT_SECRET,
    Demo,
    LiveServer,
    bearer,
    connect_events,
    receive_json,
)

from central.app import create_app
from central.auth import issue_token
from central.config import ConfigError, Settings
from central.services import Services
from central.users import upsert_user

SUBSCRIBE = '{"type": "subscribe", "v": 1, "patient_id": "P-0001"}'


async def _user(services: Services, username: str, roles: list[str]) -> str:
    user_id = await upsert_user(services.pool, username, username, "pw-" * 4, roles)
    return issue_token(JWT_SECRET, user_id, 300)


@pytest.fixture
async def admin(services: Services, demo: Demo) -> str:
    return await _user(services, "admin.eva", ["admin"])


async def _restrict(
    client: httpx.AsyncClient, admin: str, **lists: list[str]
) -> httpx.Response:
    return await client.put(
        "/patients/P-0001/restrictions", json=lists, headers=bearer(admin)
    )


async def _open(
    client: httpx.AsyncClient, token: str, reason: object
) -> httpx.Response:
    return await client.post(
        "/patients/P-0001/break-the-glass",
        json={"reason": reason},
        headers=bearer(token),
    )


async def _reads(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get("/patients/P-0001/vitals", headers=bearer(token))
    return response.status_code


async def test_deny_overrides_assignment(
    client: httpx.AsyncClient, demo: Demo, admin: str
) -> None:
    saved = await _restrict(client, admin, deny=["nurse.ana"])
    assert saved.status_code == 200, saved.text
    assert saved.json() == {"patient_id": "P-0001", "allow": [], "deny": ["nurse.ana"]}
    response = await client.get("/patients/P-0001", headers=bearer(demo.ana_token))
    assert response.status_code == 403
    assert "limited who may see their record" in response.json()["error"]
    listing = await client.get("/patients", headers=bearer(demo.ana_token))
    assert listing.json()["patients"] == []


async def test_allow_list_excludes_others(
    client: httpx.AsyncClient, demo: Demo, services: Services, admin: str
) -> None:
    await _restrict(client, admin, allow=["nurse.ben"])
    assert await _reads(client, demo.ana_token) == 403
    # Being on the allow list does not replace an assignment.
    assert await _reads(client, demo.ben_token) == 403
    assert await _reads(client, admin) == 403
    await _restrict(client, admin, allow=["nurse.ana"])
    assert await _reads(client, demo.ana_token) == 200


async def test_restriction_ends_live_subscription(
    live_server: LiveServer,
    client: httpx.AsyncClient,
    demo: Demo,
    admin: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("central.events.CONSENT_RECHECK_S", 0.2)
    async with connect_events(live_server, demo.ana_token) as ana:
        await ana.send(SUBSCRIBE)
        assert (await receive_json(ana))["type"] == "subscribed"
        await _restrict(client, admin, deny=["nurse.ana"])
        ended = await receive_json(ana)
    assert ended["type"] == "error"
    assert ended["status"] == 403


async def test_restrictions_admin_only(
    client: httpx.AsyncClient, demo: Demo, admin: str
) -> None:
    response = await client.put(
        "/patients/P-0001/restrictions",
        json={"deny": ["nurse.ben"]},
        headers=bearer(demo.ana_token),
    )
    assert response.status_code == 403
    both = await _restrict(client, admin, allow=["nurse.ben"], deny=["nurse.ben"])
    assert both.status_code == 400
    assert "in both allow and deny" in both.json()["error"]
    unknown = await _restrict(client, admin, deny=["nobody"])
    assert unknown.status_code == 400
    assert "unknown users ['nobody']" in unknown.json()["error"]
    read = await client.get("/patients/P-0001/restrictions", headers=bearer(admin))
    assert read.json() == {"patient_id": "P-0001", "allow": [], "deny": []}


async def test_break_glass_grants_time_limited_access(
    client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    assert await _reads(client, demo.ben_token) == 403
    opened = await _open(client, demo.ben_token, "  cardiac arrest call  ")
    assert opened.status_code == 201, opened.text
    grant = opened.json()
    assert grant["reason"] == "cardiac arrest call"
    lasted = datetime.fromisoformat(grant["expires_at"]) - datetime.fromisoformat(
        grant["starts_at"]
    )
    assert lasted.total_seconds() == 3600
    assert await _reads(client, demo.ben_token) == 200
    me = await client.get("/auth/me", headers=bearer(demo.ben_token))
    assert [item["patient_id"] for item in me.json()["break_the_glass"]] == ["P-0001"]

    await services.pool.execute(
        "UPDATE break_glass_grants SET starts_at = now() - interval '2 hours', "
        "expires_at = now() - interval '1 hour'"
    )
    assert await _reads(client, demo.ben_token) == 403


async def test_break_glass_overrides_restriction_and_is_flagged(
    client: httpx.AsyncClient, demo: Demo, services: Services, admin: str
) -> None:
    await _restrict(client, admin, deny=["nurse.ana"])
    opened = await _open(client, demo.ana_token, "patient collapsed")
    assert opened.status_code == 201
    assert await _reads(client, demo.ana_token) == 200
    rows = await services.pool.fetch(
        "SELECT action, detail FROM audit_log WHERE action LIKE 'break_the_glass.%' "
        "ORDER BY id"
    )
    assert [row["action"] for row in rows] == [
        "break_the_glass.open",
        "break_the_glass.read",
    ]
    assert rows[0]["detail"]["reason"] == "patient collapsed"
    assert rows[1]["detail"] == {
        "grant_id": opened.json()["id"],
        "action": "vitals.read",
    }


@pytest.mark.parametrize("reason", ["", "   ", None])
async def test_break_glass_needs_reason(
    client: httpx.AsyncClient, demo: Demo, reason: object
) -> None:
    response = await _open(client, demo.ben_token, reason)
    assert response.status_code == 400
    assert "reason" in response.json()["error"]
    assert await _reads(client, demo.ben_token) == 403


async def test_break_glass_unknown_patient_404(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    response = await client.post(
        "/patients/P-0404/break-the-glass",
        json={"reason": "wrong id"},
        headers=bearer(demo.ben_token),
    )
    assert response.status_code == 404


async def test_admin_lists_and_reviews_grants(
    client: httpx.AsyncClient, demo: Demo, services: Services, admin: str
) -> None:
    opened = await _open(client, demo.ben_token, "covering colleague")
    await _reads(client, demo.ben_token)
    await _reads(client, demo.ben_token)
    listing = await client.get(
        "/audit/break-the-glass", params={"unreviewed": "true"}, headers=bearer(admin)
    )
    assert listing.status_code == 200
    (grant,) = listing.json()["grants"]
    assert grant["username"] == "nurse.ben"
    assert grant["reason"] == "covering colleague"
    assert grant["reads"] == 2
    assert grant["reviewed_at"] is None

    grant_id = opened.json()["id"]
    reviewed = await client.post(
        f"/audit/break-the-glass/{grant_id}/review",
        json={"note": "justified"},
        headers=bearer(admin),
    )
    assert reviewed.status_code == 200, reviewed.text
    assert reviewed.json()["review_note"] == "justified"
    remaining = await client.get(
        "/audit/break-the-glass", params={"unreviewed": "true"}, headers=bearer(admin)
    )
    assert remaining.json()["grants"] == []
    nurse = await client.get("/audit/break-the-glass", headers=bearer(demo.ana_token))
    assert nurse.status_code == 403
    twice = await client.post(
        f"/audit/break-the-glass/{grant_id}/review", headers=bearer(admin)
    )
    assert twice.status_code == 404


def test_break_glass_duration_setting() -> None:
    settings = Settings.from_environ({"AURA_BREAK_GLASS_S": "900"})
    assert settings.break_glass_s == 900
    assert Settings.from_environ({}).break_glass_s == 3600
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({"AURA_BREAK_GLASS_S": "0"})
    assert caught.value.variable == "AURA_BREAK_GLASS_S"


async def test_audit_off_warns_at_start(
    database_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    environ = {
        "DATABASE_URL": database_url,
        "JWT_SECRET": JWT_SECRET,
        "AURA_DATA_DIR": str(tmp_path),
        "ENABLE_AUDIT_LOG": "false",
    }
    with pytest.raises(ConfigError):
        Settings.from_environ(environ)
    settings = Settings.from_environ({**environ, "AURA_ALLOW_AUDIT_OFF": "true"})
    application = create_app(settings)
    for _ in range(2):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="central.config"):
            async with application.router.lifespan_context(application):
                pass
        assert "audit log is OFF" in caplog.text


async def test_break_glass_subscription_flagged(
    live_server: LiveServer, client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    await _open(client, demo.ben_token, "covering the ward at night")
    async with connect_events(live_server, demo.ben_token) as ben:
        await ben.send(SUBSCRIBE)
        assert (await receive_json(ben))["type"] == "subscribed"
    detail = await services.pool.fetchval(
        "SELECT detail FROM audit_log WHERE action = 'events.subscribe'"
    )
    assert detail == {"access": "break_the_glass"}
