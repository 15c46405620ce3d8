"""The dashboard's static files, their headers, and the audited alarm audio pause."""

from __future__ import annotations

import httpx
from central_testkit import Demo, bearer

from central.services import Services


async def test_root_redirects_to_dashboard(client: httpx.AsyncClient) -> None:
    response = await client.get("/")
    assert response.status_code == 307
    assert response.headers["location"] == "/ward/"


async def test_dashboard_served_with_strict_policy(client: httpx.AsyncClient) -> None:
    page = await client.get("/ward/")
    assert page.status_code == 200
    assert '<script type="module" src="app.js">' in page.text
    policy = page.headers["content-security-policy"]
    assert "default-src 'self'" in policy
    assert "script-src 'self'" in policy
    assert page.headers["x-content-type-options"] == "nosniff"
    for name in ("app.js", "chat-crypto.js", "ecg.js", "style.css"):
        response = await client.get(f"/ward/{name}")
        assert response.status_code == 200, name


async def test_audio_pause_audited(
    client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    path = f"/patients/{demo.patient_id}/alarms/alarm-1/audio-pause"
    response = await client.post(
        path, headers=bearer(demo.ana_token), json={"seconds": 60}
    )
    assert response.status_code == 200
    assert response.json()["alarm_id"] == "alarm-1"
    row = await services.pool.fetchrow(
        "SELECT actor_id, detail FROM audit_log WHERE action = 'alarm.audio_pause'"
    )
    assert row["actor_id"] == str(demo.ana_id)
    assert row["detail"]["seconds"] == 60


async def test_audio_pause_needs_consent_and_valid_seconds(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    path = f"/patients/{demo.patient_id}/alarms/alarm-1/audio-pause"
    refused = await client.post(path, headers=bearer(demo.ben_token), json={})
    assert refused.status_code == 403
    too_long = await client.post(
        path, headers=bearer(demo.ana_token), json={"seconds": 3600}
    )
    assert too_long.status_code == 400
    assert "seconds" in too_long.json()["error"]
    anonymous = await client.post(path, json={})
    assert anonymous.status_code == 401
