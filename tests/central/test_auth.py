"""Login, token validation (forged, expired, wrong algorithm) and /auth/me."""

from __future__ import annotations

import base64
import json
import time

import httpx
import jwt
import pytest
from central_testkit import JWT_SECRET, PASSWORD, Demo, bearer

from central.auth import TOKEN_AUDIENCE, TOKEN_ISSUER
from central.services import Services


def _claims(user_id: int, **changes: object) -> dict[str, object]:
    now = int(time.time())
    claims: dict[str, object] = {
        "sub": str(user_id),
        "iss": TOKEN_ISSUER,
        "aud": TOKEN_AUDIENCE,
        "iat": now,
        "exp": now + 300,
    }
    claims.update(changes)
    return claims


def _b64(data: dict[str, object]) -> str:
    raw = json.dumps(data).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unsigned_token(claims: dict[str, object]) -> str:
    # Built by hand: PyJWT refuses to sign with "none" unless asked, and the point is
    # that the server must reject such a token whatever produced it.
    return f"{_b64({'alg': 'none', 'typ': 'JWT'})}.{_b64(claims)}."


async def _audit_rows(services: Services, action: str) -> list[dict]:
    rows = await services.pool.fetch(
        "SELECT * FROM audit_log WHERE action = $1 ORDER BY id", action
    )
    return [dict(row) for row in rows]


async def test_login_returns_working_token(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    response = await client.post(
        "/auth/login", json={"username": "nurse.ana", "password": PASSWORD}
    )
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    me = await client.get("/auth/me", headers=bearer(body["access_token"]))
    assert me.status_code == 200
    assert me.json()["username"] == "nurse.ana"


async def test_login_wrong_password_401(
    client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    response = await client.post(
        "/auth/login", json={"username": "nurse.ana", "password": "wrong password"}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid username or password"
    rows = await _audit_rows(services, "login")
    assert [row["outcome"] for row in rows] == ["refused"]
    assert rows[0]["actor_id"] == "nurse.ana"
    assert rows[0]["detail"] == {"reason": "wrong password"}


async def test_login_unknown_user_401(client: httpx.AsyncClient, demo: Demo) -> None:
    response = await client.post(
        "/auth/login", json={"username": "nobody", "password": PASSWORD}
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid username or password"


@pytest.mark.parametrize(
    "body",
    [b"not json", b'{"username": "nurse.ana"}', b'{"username": 1, "password": "x"}'],
)
async def test_login_malformed_body_400(
    client: httpx.AsyncClient, demo: Demo, body: bytes
) -> None:
    response = await client.post("/auth/login", content=body)
    assert response.status_code == 400
    assert response.json()["error"]


def _forged_tokens(user_id: int) -> dict[str, tuple[str, str]]:
    """Return name -> (token, expected words in the error) for each attack."""
    now = int(time.time())
    return {
        "alg none": (_unsigned_token(_claims(user_id)), "'none' is not accepted"),
        "wrong key": (
            jwt.encode(
                _claims(user_id), "another-secret-" + "x" * 32, algorithm="HS256"
            ),
            "signature is invalid",
        ),
        "HS512": (
            jwt.encode(_claims(user_id), JWT_SECRET, algorithm="HS512"),
            "'HS512' is not accepted; only HS256",
        ),
        "expired": (
            jwt.encode(_claims(user_id, iat=now - 600, exp=now - 60), JWT_SECRET),
            "token has expired",
        ),
        "future iat": (
            jwt.encode(_claims(user_id, iat=now + 120, exp=now + 600), JWT_SECRET),
            "issued in the future",
        ),
        "wrong audience": (
            jwt.encode(_claims(user_id, aud="other-service"), JWT_SECRET),
            "audience",
        ),
        "no sub": (
            jwt.encode(
                {k: v for k, v in _claims(user_id).items() if k != "sub"}, JWT_SECRET
            ),
            "missing the 'sub' claim",
        ),
        "garbage": ("not.a.token", "not a valid JWT"),
    }


@pytest.mark.parametrize(
    "attack",
    [
        "alg none",
        "wrong key",
        "HS512",
        "expired",
        "future iat",
        "wrong audience",
        "no sub",
        "garbage",
    ],
)
async def test_bad_token_401(
    client: httpx.AsyncClient, demo: Demo, services: Services, attack: str
) -> None:
    token, expected = _forged_tokens(demo.ana_id)[attack]
    response = await client.get("/auth/me", headers=bearer(token))
    assert response.status_code == 401
    assert expected in response.json()["error"]
    assert response.headers["www-authenticate"] == "Bearer"
    rows = await _audit_rows(services, "access")
    assert len(rows) == 1
    assert rows[0]["outcome"] == "refused"
    assert rows[0]["detail"]["path"] == "/auth/me"
    assert token not in json.dumps(rows[0]["detail"])


async def test_iat_within_leeway_accepted(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    now = int(time.time())
    token = jwt.encode(_claims(demo.ana_id, iat=now + 10), JWT_SECRET)
    response = await client.get("/auth/me", headers=bearer(token))
    assert response.status_code == 200


async def test_missing_token_401(client: httpx.AsyncClient, demo: Demo) -> None:
    response = await client.get("/auth/me")
    assert response.status_code == 401
    assert "missing bearer token" in response.json()["error"]


async def test_token_of_deleted_user_401(
    client: httpx.AsyncClient, demo: Demo, services: Services
) -> None:
    await services.pool.execute(
        "UPDATE users SET disabled_at = now() WHERE id = $1", demo.ben_id
    )
    response = await client.get("/auth/me", headers=bearer(demo.ben_token))
    assert response.status_code == 401
    assert "not an active user" in response.json()["error"]


async def test_me_lists_profile_and_assignments(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    response = await client.get("/auth/me", headers=bearer(demo.ana_token))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == demo.ana_id
    assert body["username"] == "nurse.ana"
    assert body["display_name"] == "Ana"
    assert body["roles"] == ["nurse"]
    assert len(body["assignments"]) == 1
    assignment = body["assignments"][0]
    assert assignment["scope"] == "bed"
    assert assignment["bed_id"] == "bed-1"
    assert assignment["patient_ids"] == ["P-0001"]
    assert assignment["ends_at"] is not None
    assert body["break_the_glass"] == []


async def test_me_without_assignments(client: httpx.AsyncClient, demo: Demo) -> None:
    response = await client.get("/auth/me", headers=bearer(demo.ben_token))
    assert response.status_code == 200
    assert response.json()["assignments"] == []
