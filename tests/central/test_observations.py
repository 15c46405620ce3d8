"""Manual observations: validation, consent, audit, and their use in NEWS2."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
from central_testkit import DEVICE_ID, Demo, bearer
from test_care import _full_vitals

from central.services import Services
from central.storage import store_batch
from protocol.messages import decode_device_message

PATH = "/patients/P-0001/observations"


async def _news2(client: httpx.AsyncClient, token: str) -> dict:
    response = await client.get("/care/ward", headers=bearer(token))
    (item,) = [i for i in response.json()["items"] if i["kind"] == "news2"]
    return item["news2"]


async def test_observation_recorded_and_audited(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    body = {"on_oxygen": True, "consciousness": "V", "respiration_rate": 18}
    response = await client.post(PATH, json=body, headers=bearer(demo.ana_token))
    assert response.status_code == 201, response.text
    stored = response.json()
    assert stored["values"] == body
    assert stored["recorded_by"] == "Ana"
    audit = await services.pool.fetchrow(
        "SELECT actor_id, patient_id, detail FROM audit_log "
        "WHERE action = 'observation.record'"
    )
    assert audit["actor_id"] == str(demo.ana_id)
    assert audit["patient_id"] == demo.patient_id
    assert audit["detail"]["parameters"] == [
        "on_oxygen",
        "consciousness",
        "respiration_rate",
    ]


async def test_unassigned_nurse_403(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    response = await client.post(
        PATH, json={"on_oxygen": False}, headers=bearer(demo.ben_token)
    )
    assert response.status_code == 403
    count = await services.pool.fetchval("SELECT count(*) FROM manual_observations")
    assert count == 0


BAD_OBSERVATIONS = [
        ({"consciousness": "X"}, "consciousness", "Invalid enum value 'X'"),
        ({"on_oxygen": "yes"}, "on_oxygen", "Expected `bool | null`"),
        ({"temperature": 60}, "temperature", "<= 46"),
        ({"oxygen": True}, "oxygen", "unknown field"),
        ({}, "body", "record at least one of"),
        ({"note": "only a note"}, "body", "record at least one of"),
        ({"on_oxygen": True, "observed_at": "2020-01-01T00:00:00Z"}, "observed_at",
         "within the last 24 h"),
]


async def test_bad_observation_400(client: httpx.AsyncClient, demo: Demo) -> None:
    for body, field, words in BAD_OBSERVATIONS:
        response = await client.post(PATH, json=body, headers=bearer(demo.ana_token))
        assert response.status_code == 400, body
        assert response.json()["field"] == field, body
        assert words in response.json()["error"], body


async def test_not_json_400(client: httpx.AsyncClient, demo: Demo) -> None:
    response = await client.post(
        PATH, content=b"on_oxygen=1", headers=bearer(demo.ana_token)
    )
    assert response.status_code == 400
    assert "expected a JSON object" in response.json()["error"]


async def test_news2_complete_with_manual_parts(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    # Device vitals score 2 + 1 + 1 + 3 + 0 = 7; oxygen adds 2 and voice 3: 12.
    await store_batch(
        services.pool, DEVICE_ID, [decode_device_message(_full_vitals(1))]
    )
    response = await client.post(
        PATH,
        json={"on_oxygen": True, "consciousness": "V"},
        headers=bearer(demo.ana_token),
    )
    assert response.status_code == 201
    news2 = await _news2(client, demo.ana_token)
    assert news2["total"] == 12
    assert news2["complete"] is True
    assert news2["missing"] == []
    assert news2["parts"]["air_or_oxygen"] == {
        "value": "oxygen",
        "band": "oxygen",
        "score": 2,
    }
    assert news2["parts"]["consciousness"]["score"] == 3
    assert news2["sources"]["consciousness"] == "manual"
    assert news2["sources"]["pulse"] == "device"


async def test_newer_manual_value_wins(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    earlier = datetime.now(UTC) - timedelta(minutes=10)
    await store_batch(
        services.pool, DEVICE_ID, [decode_device_message(_full_vitals(1, earlier))]
    )
    await client.post(
        PATH, json={"respiration_rate": 14}, headers=bearer(demo.ana_token)
    )
    news2 = await _news2(client, demo.ana_token)
    assert news2["parts"]["respiration_rate"]["value"] == 14
    assert news2["parts"]["respiration_rate"]["score"] == 0
    assert news2["sources"]["respiration_rate"] == "manual"
