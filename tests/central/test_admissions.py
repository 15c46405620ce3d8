"""Admit, transfer, discharge: access and device data follow the patient."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from central_testkit import DEVICE_ID, JWT_SECRET, Demo, bearer, numerics

from central.auth import issue_token
from central.services import Services
from central.storage import store_batch
from central.users import upsert_user
from protocol.messages import decode_device_message


async def _token(services: Services, username: str, roles: list[str]) -> str:
    user_id = await upsert_user(services.pool, username, username, "pw-" * 4, roles)
    return issue_token(JWT_SECRET, user_id, 300)


@pytest.fixture
async def charge(services: Services, demo: Demo) -> str:
    await services.pool.execute(
        "INSERT INTO beds (id, ward_id, label) VALUES "
        "('bed-2', 'ward-a', 'Bed 2'), ('bed-3', 'ward-a', 'Bed 3')"
    )
    return await _token(services, "charge.cleo", ["charge_nurse"])


async def _store(services: Services, *frames: str) -> None:
    messages = [decode_device_message(frame) for frame in frames]
    await store_batch(services.pool, DEVICE_ID, messages)


async def _owners(services: Services) -> dict[int, str | None]:
    rows = await services.pool.fetch(
        "SELECT DISTINCT seq, patient_id FROM vitals ORDER BY seq"
    )
    return {row["seq"]: row["patient_id"] for row in rows}


async def _vital_values(
    client: httpx.AsyncClient, token: str, patient_id: str
) -> list[float]:
    since = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    response = await client.get(
        f"/patients/{patient_id}/vitals",
        params={"since": since, "code": "MDC_ECG_HEART_RATE"},
        headers=bearer(token),
    )
    assert response.status_code == 200, response.text
    return [item["value"] for item in response.json()["measurements"]]


async def _admit(
    client: httpx.AsyncClient, token: str, patient_id: str, bed_id: str
) -> httpx.Response:
    body = {"patient_id": patient_id, "bed_id": bed_id, "display_name": "Zoe"}
    return await client.post("/admissions", json=body, headers=bearer(token))


async def test_transfer_moves_access_and_history(
    client: httpx.AsyncClient, demo: Demo, services: Services, charge: str
) -> None:
    await _store(services, numerics(1, 61.0))
    moved = await client.post(
        "/patients/P-0001/transfer", json={"bed_id": "bed-2"}, headers=bearer(charge)
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["bed_id"] == "bed-2"
    admitted = await _admit(client, charge, "P-0002", "bed-1")
    assert admitted.status_code == 201, admitted.text
    await _store(services, numerics(2, 62.0))

    assert await _owners(services) == {1: "P-0001", 2: "P-0002"}
    # Ana's assignment is to bed 1, so she now sees the new patient only.
    assert await _vital_values(client, demo.ana_token, "P-0002") == [62.0]
    refused = await client.get("/patients/P-0001", headers=bearer(demo.ana_token))
    assert refused.status_code == 403


async def test_buffered_data_stays_with_old_patient(
    client: httpx.AsyncClient, demo: Demo, services: Services, charge: str
) -> None:
    measured_before_transfer = numerics(1, 64.0)
    await client.post(
        "/patients/P-0001/transfer", json={"bed_id": "bed-2"}, headers=bearer(charge)
    )
    await _admit(client, charge, "P-0002", "bed-1")
    # Stored after the transfer, but measured while P-0001 was in bed 1.
    await _store(services, measured_before_transfer, numerics(2, 65.0))
    # A device clock stuck in 1970 cannot place a message, so it goes by arrival.
    await _store(
        services, numerics(3, 67.0, measured_at=datetime(1970, 1, 2, tzinfo=UTC))
    )
    assert await _owners(services) == {1: "P-0001", 2: "P-0002", 3: "P-0002"}
    assert await _vital_values(client, demo.ana_token, "P-0002") == [65.0]


async def test_empty_bed_data_stored_without_patient(
    client: httpx.AsyncClient,
    demo: Demo,
    services: Services,
    charge: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    discharged = await client.post(
        "/patients/P-0001/discharge", headers=bearer(demo.ana_token)
    )
    assert discharged.status_code == 200, discharged.text
    assert discharged.json()["bed_id"] is None
    assert discharged.json()["discharged_at"] is not None
    await _store(services, numerics(1, 66.0))
    assert await _owners(services) == {1: None}
    assert "no patient was in the bed" in caplog.text
    await _admit(client, charge, "P-0003", "bed-1")
    assert await _vital_values(client, demo.ana_token, "P-0003") == []


async def test_movement_is_audited(
    client: httpx.AsyncClient, demo: Demo, services: Services, charge: str
) -> None:
    await client.post(
        "/patients/P-0001/transfer", json={"bed_id": "bed-2"}, headers=bearer(charge)
    )
    await client.post("/patients/P-0001/discharge", headers=bearer(charge))
    await _admit(client, charge, "P-0001", "bed-3")
    rows = await services.pool.fetch(
        "SELECT action, patient_id, detail FROM audit_log "
        "WHERE action LIKE 'patient.%' ORDER BY id"
    )
    assert [(row["action"], row["patient_id"]) for row in rows] == [
        ("patient.transfer", "P-0001"),
        ("patient.discharge", "P-0001"),
        ("patient.admit", "P-0001"),
    ]
    assert rows[0]["detail"] == {"from_bed_id": "bed-1", "to_bed_id": "bed-2"}
    assert rows[2]["detail"] == {"bed_id": "bed-3", "new_patient": False}


async def test_nurse_admits_only_into_covered_bed(
    client: httpx.AsyncClient, demo: Demo, services: Services, charge: str
) -> None:
    await client.post("/patients/P-0001/discharge", headers=bearer(charge))
    ben = await _admit(client, demo.ben_token, "P-0004", "bed-1")
    ana_elsewhere = await _admit(client, demo.ana_token, "P-0004", "bed-2")
    ana = await _admit(client, demo.ana_token, "P-0004", "bed-1")
    assert ben.status_code == 403
    assert "bed bed-1 is not one" in ben.json()["error"]
    assert ana_elsewhere.status_code == 403
    assert ana.status_code == 201


async def test_readmission_needs_consent(
    client: httpx.AsyncClient, demo: Demo, charge: str
) -> None:
    # After discharge Ana's bed assignment no longer covers P-0001, so a bed
    # assignment cannot be used to reopen an old record.
    await client.post("/patients/P-0001/discharge", headers=bearer(charge))
    response = await _admit(client, demo.ana_token, "P-0001", "bed-1")
    assert response.status_code == 403


async def test_unassigned_nurse_cannot_move(
    client: httpx.AsyncClient, demo: Demo, charge: str
) -> None:
    transfer = await client.post(
        "/patients/P-0001/transfer",
        json={"bed_id": "bed-2"},
        headers=bearer(demo.ben_token),
    )
    discharge = await client.post(
        "/patients/P-0001/discharge", headers=bearer(demo.ben_token)
    )
    assert transfer.status_code == 403
    assert discharge.status_code == 403


MOVEMENT_ERRORS = [
    (
        "/admissions",
        {"patient_id": "P-9", "bed_id": "bed-1", "display_name": "Z"},
        409,
        "bed bed-1 is occupied",
    ),
    (
        "/admissions",
        {"patient_id": "P-9", "bed_id": "bed-9", "display_name": "Z"},
        404,
        "bed bed-9 not found",
    ),
    (
        "/admissions",
        {"patient_id": "P-9", "bed_id": "bed-2"},
        400,
        "display_name: required",
    ),
    (
        "/admissions",
        {"patient_id": "P 9", "bed_id": "bed-2", "display_name": "Z"},
        400,
        "patient_id",
    ),
    (
        "/admissions",
        {"patient_id": "P-0001", "bed_id": "bed-2"},
        409,
        "already admitted",
    ),
    ("/patients/P-0001/transfer", {"bed_id": "bed-1"}, 409, "already in bed"),
    ("/patients/P-0001/transfer", {}, 400, "bed_id"),
    ("/patients/P-0404/transfer", {"bed_id": "bed-2"}, 404, "not found"),
    ("/patients/P-0404/discharge", None, 404, "not found"),
]


async def test_movement_errors(client: httpx.AsyncClient, charge: str) -> None:
    # One database for all cases keeps this fast, and each case names itself on failure.
    for path, body, status, words in MOVEMENT_ERRORS:
        response = await client.post(path, json=body, headers=bearer(charge))
        assert response.status_code == status, (path, body, response.text)
        assert words in response.json()["error"], (path, body, response.text)


async def test_discharge_twice_409(
    client: httpx.AsyncClient, demo: Demo, charge: str
) -> None:
    await client.post("/patients/P-0001/discharge", headers=bearer(charge))
    again = await client.post("/patients/P-0001/discharge", headers=bearer(charge))
    assert again.status_code == 409
    assert "not admitted" in again.json()["error"]


async def test_role_without_clinical_duty_refused(
    client: httpx.AsyncClient, demo: Demo, services: Services, charge: str
) -> None:
    engineer = await _token(services, "biomed.bo", ["biomedical_engineer"])
    response = await _admit(client, engineer, "P-0005", "bed-2")
    assert response.status_code == 403
    assert "needs one of the roles" in response.json()["error"]
