"""Patient REST reads: consent on every route, audit of every read and refusal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from central_testkit import DEVICE_ID, JWT_SECRET, Demo, bearer, emergency, numerics

from central.auth import issue_token
from central.services import Services
from central.storage import store_batch
from central.users import upsert_user
from protocol.messages import decode_device_message

ROUTE_ACTIONS = [
    ("/patients/P-0001", "patient.read"),
    ("/patients/P-0001/vitals", "vitals.read"),
    ("/patients/P-0001/history", "history.read"),
]
ROUTES = [path for path, _ in ROUTE_ACTIONS]
BASE = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


async def _store(services: Services, *frames: str) -> None:
    messages = [decode_device_message(frame) for frame in frames]
    await store_batch(services.pool, DEVICE_ID, messages)


async def _audit(services: Services, action: str) -> list[dict]:
    rows = await services.pool.fetch(
        "SELECT actor_kind, actor_id, patient_id, outcome, detail FROM audit_log "
        "WHERE action = $1 ORDER BY id",
        action,
    )
    return [dict(row) for row in rows]


@pytest.mark.parametrize("path", ROUTES)
async def test_assigned_nurse_reads_200(
    client: httpx.AsyncClient, demo: Demo, path: str
) -> None:
    response = await client.get(path, headers=bearer(demo.ana_token))
    assert response.status_code == 200
    assert response.json()["patient_id" if path != ROUTES[0] else "id"] == "P-0001"


@pytest.mark.parametrize(("path", "action"), ROUTE_ACTIONS)
async def test_unassigned_nurse_403_audited(
    client: httpx.AsyncClient, demo: Demo, services: Services, path: str, action: str
) -> None:
    response = await client.get(path, headers=bearer(demo.ben_token))
    assert response.status_code == 403
    body = response.json()
    assert "not assigned to patient P-0001" in body["error"]
    assert body["patient_id"] == "P-0001"
    rows = await _audit(services, action)
    assert len(rows) == 1
    assert rows[0]["outcome"] == "refused"
    assert rows[0]["actor_id"] == str(demo.ben_id)
    assert rows[0]["patient_id"] == "P-0001"


@pytest.mark.parametrize(("path", "action"), ROUTE_ACTIONS)
async def test_read_is_audited(
    client: httpx.AsyncClient, demo: Demo, services: Services, path: str, action: str
) -> None:
    await client.get(path, headers=bearer(demo.ana_token))
    rows = await _audit(services, action)
    assert len(rows) == 1
    assert rows[0]["outcome"] == "ok"
    assert rows[0]["actor_kind"] == "user"
    assert rows[0]["actor_id"] == str(demo.ana_id)
    assert rows[0]["patient_id"] == "P-0001"


async def test_unknown_patient_403_for_nurse(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    # 403 rather than 404, so a nurse cannot probe which patient ids exist.
    response = await client.get("/patients/P-9999", headers=bearer(demo.ana_token))
    assert response.status_code == 403


async def test_list_shows_only_assigned(
    client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    ana = await client.get("/patients", headers=bearer(demo.ana_token))
    ben = await client.get("/patients", headers=bearer(demo.ben_token))
    assert [p["id"] for p in ana.json()["patients"]] == ["P-0001"]
    assert ana.json()["patients"][0]["ward"] == "Ward A"
    assert ben.json()["patients"] == []
    rows = await _audit(services, "patients.list")
    assert [row["detail"]["patient_ids"] for row in rows] == [["P-0001"], []]


async def test_ended_assignment_403(
    client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    await services.pool.execute(
        "UPDATE assignments SET starts_at = now() - interval '2 hours', "
        "ends_at = now() - interval '1 hour' WHERE user_id = $1",
        demo.ana_id,
    )
    response = await client.get(
        "/patients/P-0001/vitals", headers=bearer(demo.ana_token)
    )
    assert response.status_code == 403


async def test_admin_reads_any_patient(
    client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    admin_id = await upsert_user(
        services.pool, "admin.eva", "Eva", "pw-admin-1", ["admin"]
    )
    token = issue_token(JWT_SECRET, admin_id, 60)
    listing = await client.get("/patients", headers=bearer(token))
    missing = await client.get("/patients/P-9999", headers=bearer(token))
    assert [p["id"] for p in listing.json()["patients"]] == ["P-0001"]
    assert missing.status_code == 404


async def test_vitals_range_and_code_filter(
    client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    await _store(
        services,
        *(
            numerics(seq, 60.0 + seq, measured_at=BASE + timedelta(seconds=seq))
            for seq in range(10)
        ),
    )
    params = {
        "since": (BASE + timedelta(seconds=2)).isoformat(),
        "until": (BASE + timedelta(seconds=5)).isoformat(),
        "code": "MDC_ECG_HEART_RATE",
    }
    response = await client.get(
        "/patients/P-0001/vitals", params=params, headers=bearer(demo.ana_token)
    )
    assert response.status_code == 200
    body = response.json()
    assert [m["value"] for m in body["measurements"]] == [62.0, 63.0, 64.0]
    assert {m["unit"] for m in body["measurements"]} == {"/min"}
    assert body["truncated"] is False


async def test_vitals_limit_truncates(
    client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    await _store(services, *(numerics(seq, measured_at=BASE) for seq in range(3)))
    until = BASE + timedelta(seconds=1)
    params = {"since": BASE.isoformat(), "until": until.isoformat(), "limit": "4"}
    response = await client.get(
        "/patients/P-0001/vitals", params=params, headers=bearer(demo.ana_token)
    )
    assert len(response.json()["measurements"]) == 4
    assert response.json()["truncated"] is True


@pytest.mark.parametrize(
    ("params", "words"),
    [
        ({"since": "yesterday"}, "since: expected an ISO 8601 time"),
        (
            {"until": "2030-01-01T00:00:00"},
            "until: time '2030-01-01T00:00:00' has no UTC",
        ),
        ({"code": "MDC_NOPE"}, "code: unknown vital-sign code 'MDC_NOPE'"),
        ({"limit": "0"}, "limit: expected 1 to 10000, got 0"),
        (
            {"since": "2030-01-02T00:00:00Z", "until": "2030-01-01T00:00:00Z"},
            "must be before until",
        ),
    ],
)
async def test_vitals_bad_parameters_400(
    client: httpx.AsyncClient, demo: Demo, params: dict[str, str], words: str
) -> None:
    response = await client.get(
        "/patients/P-0001/vitals", params=params, headers=bearer(demo.ana_token)
    )
    assert response.status_code == 400
    assert words in response.json()["error"]


async def test_history_vitals_and_alarms(
    client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    frames = [
        numerics(1, 60.0, measured_at=BASE),
        numerics(2, 80.0, measured_at=BASE + timedelta(seconds=30)),
        numerics(3, 100.0, measured_at=BASE + timedelta(minutes=1)),
    ]
    await _store(services, *frames)
    await _store(services, emergency(4))
    await services.pool.execute(
        "UPDATE device_messages SET device_time = $1 WHERE seq = 4",
        BASE + timedelta(seconds=90),
    )
    params = {
        "since": BASE.isoformat(),
        "until": (BASE + timedelta(minutes=3)).isoformat(),
        "kinds": "vitals,alarm",
    }
    response = await client.get(
        "/patients/P-0001/history", params=params, headers=bearer(demo.ana_token)
    )
    assert response.status_code == 200
    body = response.json()
    heart_rate = [
        entry["vitals"]["MDC_ECG_HEART_RATE"]
        for entry in body["entries"]
        if entry["kind"] == "vitals"
    ]
    assert [(v["min"], v["max"], v["mean"], v["count"]) for v in heart_rate] == [
        (60.0, 80.0, 70.0, 2),
        (100.0, 100.0, 100.0, 1),
    ]
    alarms = [entry for entry in body["entries"] if entry["kind"] == "alarm"]
    assert [alarm["alarm_kind"] for alarm in alarms] == ["tachycardia"]
    assert alarms[0]["at"] == (BASE + timedelta(seconds=90)).isoformat()
    assert body["next_cursor"] is None


async def test_patient_detail_has_latest_vitals(
    client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    await _store(services, numerics(1, 70.0, measured_at=BASE))
    await _store(services, numerics(2, 75.0, measured_at=BASE + timedelta(seconds=1)))
    response = await client.get("/patients/P-0001", headers=bearer(demo.ana_token))
    body = response.json()
    latest = {vital["code"]: vital["value"] for vital in body["latest_vitals"]}
    assert latest["MDC_ECG_HEART_RATE"] == 75.0
    assert body["bed_id"] == "bed-1"
    assert [device["id"] for device in body["devices"]] == [DEVICE_ID]


@pytest.mark.parametrize("path", ["/patients/P%00", "/patients/%00%ff/vitals",
                                  "/patients/" + "x" * 200 + "/history"])
async def test_malformed_patient_id_404(
    client: httpx.AsyncClient, demo: Demo, path: str
) -> None:
    response = await client.get(path, headers=bearer(demo.ana_token))
    assert response.status_code == 404
    assert len(response.text) < 300
