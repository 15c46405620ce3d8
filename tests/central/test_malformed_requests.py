"""Inputs PostgreSQL or datetime arithmetic cannot take get a 4xx naming them.

Each case once failed with a 500: U+0000 in text (PostgreSQL text cannot store it),
ids beyond bigint, and times that overflow datetime.
"""

from __future__ import annotations

import httpx
import pytest
from central_testkit import PASSWORD, Demo, bearer

from central.auth import issue_token
from central.services import Services
from central.users import upsert_user

NUL = "\u0000"
PATIENT = "P-0001"

# (caller, method, path, JSON body, expected status, text the error must contain)
CASES = [
    (
        "admin",
        "POST",
        "/admissions",
        {"patient_id": "P-0077", "bed_id": "bed-2", "display_name": f"A{NUL}"},
        400,
        "$.display_name",
    ),
    (
        "admin",
        "POST",
        "/assignments",
        {"username": f"nurse{NUL}", "bed_id": "bed-1"},
        400,
        "$.username",
    ),
    (
        "admin",
        "POST",
        "/assignments",
        {"user_id": 2**63 + 5, "bed_id": "bed-1"},
        400,
        "$.user_id",
    ),
    (
        "admin",
        "POST",
        "/assignments",
        {
            "username": "nurse.ana",
            "bed_id": "bed-1",
            "starts_at": "9999-12-31T23:00:00Z",
        },
        400,
        "starts_at",
    ),
    (
        "admin",
        "PUT",
        f"/patients/{PATIENT}/restrictions",
        {"allow": [f"dr{NUL}"]},
        400,
        "$.allow[0]",
    ),
    (
        "ana",
        "POST",
        f"/patients/{PATIENT}/break-the-glass",
        {"reason": f"arrest{NUL}"},
        400,
        "$.reason",
    ),
    (
        "admin",
        "POST",
        "/audit/break-the-glass/1/review",
        {"note": f"ok{NUL}"},
        400,
        "$.note",
    ),
    (
        "ana",
        "GET",
        f"/patients/{PATIENT}/vitals?since=0001-01-01T00:00:00%2B05:00",
        None,
        400,
        "since",
    ),
    ("ana", "GET", "/chat/threads/T-%00", None, 404, "chat thread"),
    ("ana", "GET", "/chat/keys/%00", None, 404, "chat key"),
]


@pytest.fixture
async def tokens(services: Services, demo: Demo) -> dict[str, str]:
    admin_id = await upsert_user(services.pool, "admin.ida", "Ida", PASSWORD, ["admin"])
    admin = issue_token(services.settings.jwt_secret, admin_id, 900)
    return {"admin": admin, "ana": demo.ana_token}


@pytest.mark.parametrize(("caller", "method", "path", "body", "status", "named"), CASES)
async def test_unstorable_input_rejected(
    client: httpx.AsyncClient,
    tokens: dict[str, str],
    caller: str,
    method: str,
    path: str,
    body: object,
    status: int,
    named: str,
) -> None:
    response = await client.request(
        method, path, json=body, headers=bearer(tokens[caller])
    )
    assert response.status_code == status, response.text
    assert named in response.json()["error"]
