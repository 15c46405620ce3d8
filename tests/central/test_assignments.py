"""Assignments to patients, beds and wards: creation, expiry, ending, rights, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from central_testkit import JWT_SECRET, Demo, bearer

from central.auth import issue_token
from central.services import Services
from central.users import upsert_user


async def _user(services: Services, username: str, roles: list[str]) -> tuple[int, str]:
    user_id = await upsert_user(services.pool, username, username, "pw-" * 4, roles)
    return user_id, issue_token(JWT_SECRET, user_id, 300)


@pytest.fixture
async def charge(services: Services, demo: Demo) -> str:
    _, token = await _user(services, "charge.cleo", ["charge_nurse"])
    return token


async def _assign(
    client: httpx.AsyncClient, token: str, **body: object
) -> httpx.Response:
    return await client.post("/assignments", json=body, headers=bearer(token))


async def _reads(client: httpx.AsyncClient, token: str) -> int:
    response = await client.get("/patients/P-0001", headers=bearer(token))
    return response.status_code


async def test_ward_assignment_grants_read(
    client: httpx.AsyncClient, demo: Demo, charge: str
) -> None:
    assert await _reads(client, demo.ben_token) == 403
    created = await _assign(client, charge, username="nurse.ben", ward_id="ward-a")
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["ward_id"] == "ward-a"
    starts = datetime.fromisoformat(body["starts_at"])
    ends = datetime.fromisoformat(body["ends_at"])
    assert ends - starts == timedelta(hours=12)
    assert await _reads(client, demo.ben_token) == 200


async def test_physician_patient_assignment(
    client: httpx.AsyncClient, demo: Demo, services: Services, charge: str
) -> None:
    doctor_id, doctor = await _user(services, "dr.lee", ["physician"])
    created = await _assign(client, charge, user_id=doctor_id, patient_id="P-0001")
    assert created.status_code == 201, created.text
    assert await _reads(client, doctor) == 200
    me = await client.get("/auth/me", headers=bearer(doctor))
    (assignment,) = me.json()["assignments"]
    assert assignment["scope"] == "patient"
    assert assignment["patient_id"] == "P-0001"
    assert assignment["bed_id"] == "bed-1"


async def test_future_assignment_not_yet_valid(
    client: httpx.AsyncClient, demo: Demo, charge: str
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    created = await _assign(
        client,
        charge,
        username="nurse.ben",
        bed_id="bed-1",
        starts_at=later.isoformat(),
    )
    assert created.status_code == 201, created.text
    assert await _reads(client, demo.ben_token) == 403


async def test_expired_assignment_refused(
    client: httpx.AsyncClient, demo: Demo, services: Services, charge: str
) -> None:
    created = await _assign(client, charge, username="nurse.ben", bed_id="bed-1")
    await services.pool.execute(
        "UPDATE assignments SET starts_at = now() - interval '13 hours', "
        "ends_at = now() - interval '1 hour' WHERE id = $1",
        created.json()["id"],
    )
    assert await _reads(client, demo.ben_token) == 403


async def test_end_assignment_revokes_and_audits(
    client: httpx.AsyncClient, demo: Demo, services: Services, charge: str
) -> None:
    created = await _assign(client, charge, username="nurse.ben", bed_id="bed-1")
    assignment_id = created.json()["id"]
    ended = await client.post(
        f"/assignments/{assignment_id}/end", headers=bearer(charge)
    )
    assert ended.status_code == 200, ended.text
    assert await _reads(client, demo.ben_token) == 403
    again = await client.post(
        f"/assignments/{assignment_id}/end", headers=bearer(charge)
    )
    assert again.status_code == 404
    actions = await services.pool.fetch(
        "SELECT action, outcome FROM audit_log WHERE action LIKE 'assignment.%' "
        "ORDER BY id"
    )
    assert [(row["action"], row["outcome"]) for row in actions] == [
        ("assignment.create", "ok"),
        ("assignment.end", "ok"),
    ]


async def test_end_future_assignment_never_valid(
    client: httpx.AsyncClient, demo: Demo, services: Services, charge: str
) -> None:
    later = datetime.now(UTC) + timedelta(hours=1)
    created = await _assign(
        client,
        charge,
        username="nurse.ben",
        bed_id="bed-1",
        starts_at=later.isoformat(),
    )
    assignment_id = created.json()["id"]
    ended = await client.post(
        f"/assignments/{assignment_id}/end", headers=bearer(charge)
    )
    assert ended.status_code == 200, ended.text
    current = await services.pool.fetchval(
        "SELECT count(*) FROM assignments WHERE id = $1 AND starts_at <= now() "
        "AND now() < ends_at",
        assignment_id,
    )
    assert current == 0


async def test_list_shows_current_and_future(
    client: httpx.AsyncClient, demo: Demo, charge: str
) -> None:
    await _assign(client, charge, username="nurse.ben", ward_id="ward-a")
    listing = await client.get(
        "/assignments", params={"user_id": demo.ben_id}, headers=bearer(charge)
    )
    assert listing.status_code == 200
    (row,) = listing.json()["assignments"]
    assert row["username"] == "nurse.ben"
    assert row["current"] is True


async def test_nurse_cannot_assign(client: httpx.AsyncClient, demo: Demo) -> None:
    response = await _assign(
        client, demo.ben_token, username="nurse.ben", bed_id="bed-1"
    )
    assert response.status_code == 403
    assert "charge_nurse" in response.json()["error"]


CREATE_ERRORS = [
    ({"username": "nurse.ben"}, 400, "exactly one of patient_id, bed_id"),
    (
        {"username": "nurse.ben", "bed_id": "bed-1", "ward_id": "ward-a"},
        400,
        "exactly one of patient_id",
    ),
    ({"bed_id": "bed-1"}, 400, "exactly one of username or user_id"),
    ({"username": "nobody", "bed_id": "bed-1"}, 404, "no active user nobody"),
    ({"username": "nurse.ben", "bed_id": "bed-9"}, 404, "bed bed-9 not found"),
    (
        {"username": "nurse.ben", "bed_id": "bed-1", "ends_at": "2000-01-01T00:00:00Z"},
        400,
        "must be after starts_at",
    ),
    (
        {"username": "nurse.ben", "bed_id": "bed-1", "ends_at": "2999-01-01T00:00:00Z"},
        400,
        "at most 30 days",
    ),
    (
        {
            "username": "nurse.ben",
            "bed_id": "bed-1",
            "starts_at": "2030-01-01T00:00:00",
        },
        400,
        "no UTC offset",
    ),
    ({"username": "nurse.ben", "bed_id": "bed-1", "shift": "night"}, 400, "shift"),
]


async def test_create_errors(client: httpx.AsyncClient, charge: str) -> None:
    # One database for all cases keeps this fast, and each case names itself on failure.
    for body, status, words in CREATE_ERRORS:
        response = await _assign(client, charge, **body)
        assert response.status_code == status, (body, response.text)
        assert words in response.json()["error"], (body, response.text)


async def test_assign_engineer_400(
    client: httpx.AsyncClient, services: Services, charge: str
) -> None:
    await _user(services, "biomed.bo", ["biomedical_engineer"])
    response = await _assign(client, charge, username="biomed.bo", bed_id="bed-1")
    assert response.status_code == 400
    assert "none of the clinical roles" in response.json()["error"]
