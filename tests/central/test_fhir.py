"""FHIR search: Bundle structure (checked with fhir.resources), codes, consent, errors.

fhir.resources ships R4B models; Observation, DetectedIssue, Bundle and
OperationOutcome have the same structure in R4 and R4B for every element used here.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx
import pytest
from central_testkit import DEVICE_ID, JWT_SECRET, PASSWORD, Demo, bearer
from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome

from central.auth import issue_token
from central.services import Services
from central.storage import store_batch
from central.users import upsert_user
from protocol.messages import Emergency, Measurement, VitalsNumerics

# A few hours ago, inside the demo patient's stay in the bed, so the data is theirs.
# It must be in the past, because a future time is flagged as an implausible device
# clock, and that warning is rate-limited per device across tests.
BASE = (datetime.now(UTC) - timedelta(hours=3)).replace(minute=0, second=0, microsecond=0)
LOINC = "http://loinc.org"


def _numerics(
    seq: int, at: datetime, *measurements: tuple[str, float, str]
) -> VitalsNumerics:
    return VitalsNumerics(
        device_id=DEVICE_ID,
        seq=seq,
        sent_at=at,
        measured_at=at,
        measurements=[Measurement(code=c, value=v, unit=u) for c, v, u in measurements],
    )


def _alarm(seq: int, at: datetime, state: str) -> Emergency:
    return Emergency(
        device_id=DEVICE_ID,
        seq=seq,
        sent_at=at,
        alarm_id="alarm-7",
        kind="tachycardia",
        priority="high",
        state=state,
        started_at=BASE,
        evidence="heart rate 182 /min for 10 s",
    )


@pytest.fixture
async def stored(services: Services, demo: Demo) -> None:
    messages = [
        _numerics(
            1,
            BASE,
            ("MDC_ECG_HEART_RATE", 72.0, "/min"),
            ("MDC_PULS_OXIM_SAT_O2", 97.0, "%"),
            ("MDC_RESP_RATE", 16.0, "/min"),
            ("MDC_TEMP_BODY", 37.1, "Cel"),
            ("MDC_PRESS_BLD_NONINV_SYS", 121.0, "mm[Hg]"),
            ("MDC_PRESS_BLD_NONINV_DIA", 79.0, "mm[Hg]"),
        ),
        _numerics(2, BASE + timedelta(minutes=5), ("MDC_ECG_HEART_RATE", 80.0, "/min")),
        _numerics(
            3,
            BASE + timedelta(minutes=6),
            ("MDC_PRESS_BLD_NONINV_SYS", 130.0, "mm[Hg]"),
        ),
        _alarm(4, BASE, "raised"),
        _alarm(5, BASE + timedelta(seconds=30), "cleared"),
    ]
    await store_batch(services.pool, DEVICE_ID, messages)


async def _search(
    client: httpx.AsyncClient,
    token: str,
    resource: str = "Observation",
    **params: object,
) -> httpx.Response:
    query = {"patient": "P-0001", **params}
    return await client.get(f"/fhir/{resource}", params=query, headers=bearer(token))


def _codes(resource: dict) -> list[str]:
    return [coding["code"] for coding in resource["code"]["coding"]]


def _resources(response: httpx.Response) -> list[dict]:
    return [entry["resource"] for entry in response.json()["entry"]]


async def test_observation_bundle_is_valid_fhir(
    client: httpx.AsyncClient, demo: Demo, stored: None
) -> None:
    response = await _search(client, demo.ana_token)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    bundle = Bundle.model_validate(response.json())
    assert bundle.type == "searchset"
    assert len(bundle.entry) == 7
    for entry in bundle.entry:
        assert entry.resource.__resource_type__ == "Observation"
        assert entry.search.mode == "match"


async def test_observation_codes_and_units(
    client: httpx.AsyncClient, demo: Demo, stored: None
) -> None:
    resources = _resources(
        await _search(client, demo.ana_token, date=f"le{BASE.isoformat()}")
    )
    by_loinc = {_codes(resource)[0]: resource for resource in resources}
    expected_units = {
        "8867-4": "/min",
        "59408-5": "%",
        "9279-1": "/min",
        "8310-5": "Cel",
    }
    for loinc, unit in expected_units.items():
        quantity = by_loinc[loinc]["valueQuantity"]
        assert quantity["code"] == unit
        assert quantity["system"] == "http://unitsofmeasure.org"
    assert "2708-6" in _codes(by_loinc["59408-5"])
    for resource in resources:
        category = resource["category"][0]["coding"][0]
        assert category["code"] == "vital-signs"
        assert resource["subject"] == {"reference": "Patient/P-0001"}
        assert resource["effectiveDateTime"] == BASE.isoformat()


async def test_blood_pressure_is_one_panel(
    client: httpx.AsyncClient, demo: Demo, stored: None
) -> None:
    response = await _search(client, demo.ana_token, code="85354-9")
    panels = _resources(response)
    assert len(panels) == 2
    complete = panels[0]
    assert _codes(complete) == ["85354-9"]
    assert "valueQuantity" not in complete
    parts = {_codes(c)[0]: c["valueQuantity"] for c in complete["component"]}
    assert parts["8480-6"] == {
        "value": 121.0,
        "unit": "mm[Hg]",
        "system": "http://unitsofmeasure.org",
        "code": "mm[Hg]",
    }
    assert parts["8462-4"]["value"] == 79.0
    # The later message has only a systolic value; the diastolic part says why.
    diastolic = panels[1]["component"][1]
    assert _codes(diastolic)[0] == "8462-4"
    assert diastolic["dataAbsentReason"]["coding"][0]["code"] == "not-performed"
    Bundle.model_validate(response.json())


async def test_code_and_date_filters(
    client: httpx.AsyncClient, demo: Demo, stored: None
) -> None:
    response = await client.get(
        "/fhir/Observation",
        params=[
            ("patient", "Patient/P-0001"),
            ("code", f"{LOINC}|8867-4"),
            ("date", f"gt{BASE.isoformat()}"),
            ("date", f"le{(BASE + timedelta(minutes=5)).isoformat()}"),
        ],
        headers=bearer(demo.ana_token),
    )
    resources = _resources(response)
    assert [r["valueQuantity"]["value"] for r in resources] == [80.0]


async def test_spo2_alias_code(
    client: httpx.AsyncClient, demo: Demo, stored: None
) -> None:
    resources = _resources(await _search(client, demo.ana_token, code="2708-6"))
    assert [r["valueQuantity"]["value"] for r in resources] == [97.0]


async def test_count_and_next_link(
    client: httpx.AsyncClient, demo: Demo, stored: None
) -> None:
    response = await _search(client, demo.ana_token, _count=3)
    body = response.json()
    assert len(body["entry"]) == 3
    links = {link["relation"]: link["url"] for link in body["link"]}
    assert "_offset=3" in links["next"]
    rest = await client.get(links["next"], headers=bearer(demo.ana_token))
    assert len(rest.json()["entry"]) == 3


async def test_alarms_as_detected_issues(
    client: httpx.AsyncClient, demo: Demo, stored: None
) -> None:
    response = await _search(client, demo.ana_token, "DetectedIssue")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/fhir+json")
    Bundle.model_validate(response.json())
    [issue] = _resources(response)
    assert issue["resourceType"] == "DetectedIssue"
    assert issue["severity"] == "high"
    assert issue["status"] == "final"
    assert issue["code"]["coding"][0]["code"] == "tachycardia"
    assert issue["identifiedPeriod"] == {
        "start": BASE.isoformat(),
        "end": (BASE + timedelta(seconds=30)).isoformat(),
    }
    assert issue["author"]["identifier"]["value"] == DEVICE_ID
    assert issue["detail"] == "heart rate 182 /min for 10 s"


async def test_unassigned_refused_and_audited(
    client: httpx.AsyncClient, services: Services, demo: Demo, stored: None
) -> None:
    for resource in ("Observation", "DetectedIssue"):
        response = await _search(client, demo.ben_token, resource)
        assert response.status_code == 403
        assert response.headers["content-type"].startswith("application/fhir+json")
        outcome = OperationOutcome.model_validate(response.json())
        assert outcome.issue[0].code == "forbidden"
        action = f"fhir.{resource.lower()}.read"
        rows = await services.pool.fetch(
            "SELECT outcome, actor_id, patient_id FROM audit_log WHERE action = $1",
            action,
        )
        assert [(row["outcome"], row["actor_id"]) for row in rows] == [
            ("refused", str(demo.ben_id))
        ]
        assert rows[0]["patient_id"] == demo.patient_id


async def test_read_audited(
    client: httpx.AsyncClient, services: Services, demo: Demo, stored: None
) -> None:
    await _search(client, demo.ana_token, code="8867-4")
    row = await services.pool.fetchrow(
        "SELECT outcome, patient_id, detail FROM audit_log"
        " WHERE action = 'fhir.observation.read'"
    )
    assert row["outcome"] == "ok"
    assert row["patient_id"] == "P-0001"
    assert row["detail"]["resources"] == 2


async def test_biomed_cannot_read_patients(
    client: httpx.AsyncClient, services: Services, demo: Demo
) -> None:
    user_id = await upsert_user(
        services.pool, "biomed.eve", "Eve", PASSWORD, ["biomedical_engineer"]
    )
    token = issue_token(JWT_SECRET, user_id, services.settings.token_ttl_s)
    response = await _search(client, token)
    assert response.status_code == 403


async def test_unauthenticated_401_outcome(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    response = await client.get("/fhir/Observation", params={"patient": "P-0001"})
    assert response.status_code == 401
    OperationOutcome.model_validate(response.json())


async def test_unauthenticated_before_validation(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    response = await client.get("/fhir/Observation", params={"_sort": "date"})
    assert response.status_code == 401


BAD_PARAMETERS = [
    ({"patient": None}, "patient"),
    ({"patient": "Patient/bad id"}, "patient"),
    ({"code": "1234-5"}, "code"),
    ({"code": "8480-6"}, "code"),
    ({"code": "http://snomed.info/sct|8867-4"}, "code"),
    ({"date": "sa2030-01-01"}, "date"),
    ({"date": "ge2030-01-01T12:00:00"}, "date"),
    ({"date": "ge9999-12-31"}, "date"),
    ({"_count": "-1"}, "_count"),
    ({"_count": "5000"}, "_count"),
    ({"_offset": "x"}, "_offset"),
    ({"_sort": "date"}, "_sort"),
]


async def test_bad_parameter_400_names_it(
    client: httpx.AsyncClient, demo: Demo
) -> None:
    for params, parameter in BAD_PARAMETERS:
        query = {
            key: value
            for key, value in {"patient": "P-0001", **params}.items()
            if value is not None
        }
        response = await client.get(
            "/fhir/Observation", params=query, headers=bearer(demo.ana_token)
        )
        assert response.status_code == 400, params
        assert response.headers["content-type"].startswith("application/fhir+json")
        outcome = OperationOutcome.model_validate(response.json())
        assert outcome.issue[0].code == "invalid", params
        assert outcome.issue[0].expression == [parameter], params
        assert outcome.issue[0].diagnostics.startswith(f"{parameter}:"), params
