"""FHIR R4 search of vital signs (Observation) and alarms (DetectedIssue).

``GET /fhir/Observation`` returns a searchset Bundle of vital-signs Observations:
LOINC codes, UCUM units, category ``vital-signs``. Systolic and diastolic pressure
from one device message become one blood-pressure panel (85354-9) with two
components, as the FHIR vital-signs profile requires. ``GET /fhir/DetectedIssue``
returns one DetectedIssue per alarm episode (device, alarm id and start time); its
``identifiedPeriod`` has an end once the device cleared the alarm.

Both routes check consent and audit every read and refusal like the other patient
reads. Errors come back as OperationOutcome resources that name the parameter.
Unknown search parameters are rejected rather than ignored, so a typing mistake
never silently widens a search.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError
from central.audit import Actor
from central.auth import Principal, require_user
from central.consent import authorize_read
from central.services import services_of
from protocol.codes import VitalSign

logger = logging.getLogger(__name__)

FHIR_JSON = "application/fhir+json"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
MDC = "urn:iso:std:iso:11073:10101"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DEVICE_IDENTIFIER_SYSTEM = "urn:aura-one:device"
MEASUREMENT_IDENTIFIER_SYSTEM = "urn:aura-one:measurement"
ALARM_IDENTIFIER_SYSTEM = "urn:aura-one:alarm"
ALARM_KIND_SYSTEM = "urn:aura-one:alarm-kind"
BP_PANEL_LOINC = "85354-9"
# The FHIR vital-signs profile for oxygen saturation requires 2708-6; pulse oximetry
# adds the more specific 59408-5.
SPO2_PROFILE_LOINC = "2708-6"
DEFAULT_COUNT = 100
MAX_COUNT = 1000
MAX_OFFSET = 1_000_000
_IDENTIFIER = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_DATE_ONLY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_DATE_PREFIX = re.compile(r"^(ge|gt|le|lt|eq)?(.+)$")
_SEVERITY = {"high": "high", "medium": "moderate", "low": "low"}

_BP_PARTS = (VitalSign.SYSTOLIC_BP, VitalSign.DIASTOLIC_BP)
_BP_CODES = [sign.value.mdc_reference_id for sign in _BP_PARTS]
# LOINC search code -> the stored IEEE 11073 codes it selects.
_SEARCH_CODES: dict[str, list[str]] = {
    sign.value.loinc: [sign.value.mdc_reference_id]
    for sign in VitalSign
    if sign not in _BP_PARTS
}
_SEARCH_CODES[SPO2_PROFILE_LOINC] = [VitalSign.SPO2.value.mdc_reference_id]
_SEARCH_CODES[BP_PANEL_LOINC] = _BP_CODES
_BY_MDC = {sign.value.mdc_reference_id: sign.value for sign in VitalSign}


class FhirSearchError(ApiError):
    """A 400 naming the search parameter that was wrong."""

    def __init__(self, parameter: str, problem: str) -> None:
        super().__init__(400, f"{parameter}: {problem}")
        self.parameter = parameter


def operation_outcome(
    status: int, message: str, parameter: str | None = None
) -> JSONResponse:
    """Return an OperationOutcome response for an error."""
    code = {400: "invalid", 401: "login", 403: "forbidden", 404: "not-found"}.get(
        status, "exception"
    )
    issue: dict[str, Any] = {"severity": "error", "code": code, "diagnostics": message}
    if parameter is not None:
        issue["expression"] = [parameter]
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"resourceType": "OperationOutcome", "issue": [issue]},
        status_code=status,
        media_type=FHIR_JSON,
        headers=headers,
    )


@dataclass(frozen=True)
class SearchWindow:
    since: datetime | None
    until: datetime | None


def _single(request: Request, name: str) -> str | None:
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise FhirSearchError(name, f"give it at most once, got {len(values)} values")
    return values[0] if values else None


def _check_parameters(request: Request, allowed: frozenset[str]) -> None:
    for name in request.query_params:
        if name not in allowed:
            known = ", ".join(sorted(allowed))
            raise FhirSearchError(
                name[:40], f"unsupported search parameter; supported: {known}"
            )


def _patient_parameter(request: Request) -> str:
    value = _single(request, "patient")
    if value is None:
        raise FhirSearchError("patient", "required, e.g. patient=P-0001")
    patient_id = value.removeprefix("Patient/")
    if not _IDENTIFIER.match(patient_id):
        raise FhirSearchError(
            "patient", f"{value[:80]!r} is not a patient id or Patient/<id> reference"
        )
    return patient_id


def _date_bounds(value: str) -> tuple[datetime, datetime]:
    """Return [start, end) of the time a FHIR date or dateTime value denotes."""
    if _DATE_ONLY.match(value):
        day = date.fromisoformat(value)
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        return start, start + timedelta(days=1)
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError("no UTC offset")
    instant = parsed.astimezone(UTC)
    return instant, instant + timedelta(microseconds=1)


def _search_window(request: Request) -> SearchWindow:
    since: datetime | None = None
    until: datetime | None = None
    values = request.query_params.getlist("date")
    if len(values) > 2:
        raise FhirSearchError(
            "date", f"give it at most twice, got {len(values)} values"
        )
    for value in values:
        match = _DATE_PREFIX.match(value)
        prefix, text = (match.group(1) or "eq", match.group(2)) if match else ("", "")
        try:
            start, end = _date_bounds(text)
        except (ValueError, OverflowError):
            raise FhirSearchError(
                "date",
                f"{value[:80]!r} is not a prefix (ge, gt, le, lt, eq) and a date such "
                "as 2030-01-01 or a time with offset such as 2030-01-01T12:00:00Z",
            ) from None
        if prefix in ("ge", "eq"):
            since = start if since is None else max(since, start)
        if prefix == "gt":
            since = end if since is None else max(since, end)
        if prefix in ("le", "eq"):
            until = end if until is None else min(until, end)
        if prefix == "lt":
            until = start if until is None else min(until, start)
    return SearchWindow(since, until)


def _int_parameter(request: Request, name: str, default: int, maximum: int) -> int:
    value = _single(request, name)
    if value is None:
        return default
    digits = value.isascii() and value.isdigit() and len(value) <= 12
    if not digits or int(value) > maximum:
        raise FhirSearchError(
            name, f"expected an integer 0 to {maximum}, got {value[:40]!r}"
        )
    return int(value)


def _observation_codes(request: Request) -> list[str] | None:
    value = _single(request, "code")
    if value is None:
        return None
    selected: list[str] = []
    for token in value.split(","):
        system, bar, code = token.rpartition("|")
        if bar and system not in ("", LOINC):
            raise FhirSearchError(
                "code", f"unsupported code system {system[:80]!r}; use {LOINC}"
            )
        if code not in _SEARCH_CODES:
            known = ", ".join(sorted(_SEARCH_CODES))
            raise FhirSearchError(
                "code",
                f"unsupported LOINC code {code[:40]!r}; supported: {known} (blood "
                f"pressure is the panel {BP_PANEL_LOINC})",
            )
        selected.extend(_SEARCH_CODES[code])
    return selected


def _page_links(request: Request, count: int, offset: int, more: bool) -> list[dict]:
    links = [{"relation": "self", "url": str(request.url)}]
    if more:
        next_url = request.url.include_query_params(
            _offset=offset + count, _count=count
        )
        links.append({"relation": "next", "url": str(next_url)})
    return links


def _bundle(
    request: Request,
    resources: list[dict[str, Any]],
    count: int,
    offset: int,
    more: bool,
) -> JSONResponse:
    base = str(request.base_url).rstrip("/")
    entries = [
        {
            "fullUrl": f"{base}/fhir/{resource['resourceType']}/{resource['id']}",
            "resource": resource,
            "search": {"mode": "match"},
        }
        for resource in resources
    ]
    body = {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": datetime.now(UTC).isoformat(),
        "link": _page_links(request, count, offset, more),
        "entry": entries,
    }
    return JSONResponse(body, media_type=FHIR_JSON)


def _resource_id(prefix: str, *parts: object) -> str:
    # Device ids may contain ':' and '_', which FHIR ids do not allow, so the id is a
    # stable digest and the readable key goes into ``identifier``.
    key = "/".join(str(part) for part in parts)
    return f"{prefix}-{hashlib.sha256(key.encode()).hexdigest()[:40]}"


def _device_reference(device_id: str) -> dict[str, Any]:
    return {"identifier": {"system": DEVICE_IDENTIFIER_SYSTEM, "value": device_id}}


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _coding(spec: Any) -> list[dict[str, str]]:
    codings = [{"system": LOINC, "code": spec.loinc, "display": spec.display}]
    if spec.loinc == VitalSign.SPO2.value.loinc:
        codings.append(
            {
                "system": LOINC,
                "code": SPO2_PROFILE_LOINC,
                "display": "Oxygen saturation",
            }
        )
    codings.append({"system": MDC, "code": spec.mdc_reference_id})
    return codings


def observation(row: asyncpg.Record, patient_id: str) -> dict[str, Any]:
    """Map one grouped vitals row (see ``_OBSERVATION_QUERY``) to an Observation."""
    key = f"{row['device_id']}/{row['seq']}/{row['ordinal']}"
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": _resource_id("vs", key),
        "identifier": [{"system": MEASUREMENT_IDENTIFIER_SYSTEM, "value": key}],
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": OBSERVATION_CATEGORY,
                        "code": "vital-signs",
                        "display": "Vital Signs",
                    }
                ]
            }
        ],
        "subject": {"reference": f"Patient/{patient_id}"},
        "effectiveDateTime": row["measured_at"].isoformat(),
        "device": _device_reference(row["device_id"]),
    }
    values = dict(zip(row["codes"], row["values"], strict=True))
    if row["kind"] != "bp":
        spec = _BY_MDC[row["codes"][0]]
        resource["code"] = {"coding": _coding(spec), "text": spec.display}
        resource["valueQuantity"] = _quantity(row["values"][0], spec.unit)
        return resource
    resource["code"] = {
        "coding": [
            {"system": LOINC, "code": BP_PANEL_LOINC, "display": "Blood pressure panel"}
        ],
        "text": "Blood pressure",
    }
    resource["component"] = [_bp_component(part.value, values) for part in _BP_PARTS]
    return resource


def _bp_component(spec: Any, values: dict[str, float]) -> dict[str, Any]:
    component: dict[str, Any] = {
        "code": {"coding": _coding(spec), "text": spec.display}
    }
    if spec.mdc_reference_id in values:
        component["valueQuantity"] = _quantity(values[spec.mdc_reference_id], spec.unit)
    else:
        # The profile requires both components, so a missing one records why.
        component["dataAbsentReason"] = {
            "coding": [
                {
                    "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                    "code": "not-performed",
                }
            ]
        }
    return component


# Systolic and diastolic values of one message form one group (the panel); every
# other measurement is a group of its own.
_OBSERVATION_QUERY = """
    SELECT device_id, seq, min(ordinal) AS ordinal, measured_at,
           CASE WHEN code = ANY($6::text[]) THEN 'bp' ELSE 'single' END AS kind,
           array_agg(code ORDER BY ordinal) AS codes,
           array_agg(value ORDER BY ordinal) AS values
    FROM vitals
    WHERE patient_id = $1
      AND ($2::timestamptz IS NULL OR measured_at >= $2)
      AND ($3::timestamptz IS NULL OR measured_at < $3)
      AND ($4::text[] IS NULL OR code = ANY($4::text[]))
      AND code = ANY($5::text[])
    GROUP BY device_id, seq, measured_at, kind,
             CASE WHEN code = ANY($6::text[]) THEN -1 ELSE ordinal END
    ORDER BY measured_at, device_id, seq, ordinal
    LIMIT $7 OFFSET $8
"""


async def search_observations(request: Request) -> JSONResponse:
    """Search vital-signs Observations of one patient.
    ---
    summary: FHIR R4 search of vital-signs Observations
    tags: [fhir]
    security: [{bearerAuth: []}]
    parameters:
      - {name: patient, in: query, required: true, schema: {type: string},
         example: P-0001, description: "patient id or Patient/<id>"}
      - {name: code, in: query, schema: {type: string},
         description: "comma-separated LOINC codes, optionally http://loinc.org|code"}
      - {name: date, in: query, style: form, explode: true,
         schema: {type: array, items: {type: string}, maxItems: 2},
         description: "ge, gt, le, lt or eq followed by a date or time with offset"}
      - {name: _count, in: query, schema: {type: integer, minimum: 0, maximum: 1000}}
      - {name: _offset, in: query, schema: {type: integer, minimum: 0}}
    responses:
      "200": {description: A searchset Bundle, content: {application/fhir+json: {}}}
      "400": {$ref: "#/components/responses/FhirError"}
      "401": {$ref: "#/components/responses/FhirError"}
      "403": {$ref: "#/components/responses/FhirError"}
    """
    return await _run_fhir_search(request, _search_observations)


async def _run_fhir_search(
    request: Request,
    search: Callable[[Request, Principal], Awaitable[JSONResponse]],
) -> JSONResponse:
    """Run ``search`` for an authenticated user; send any error as an OperationOutcome."""
    try:
        # Authentication comes first, so a caller without a token learns nothing
        # from the validation of its parameters.
        principal = await require_user(request)
        return await search(request, principal)
    except ApiError as exc:
        return operation_outcome(
            exc.status, exc.message, getattr(exc, "parameter", None)
        )


async def _search_observations(request: Request, principal: Principal) -> JSONResponse:
    _check_parameters(
        request, frozenset({"patient", "code", "date", "_count", "_offset"})
    )
    patient_id = _patient_parameter(request)
    codes = _observation_codes(request)
    window = _search_window(request)
    count = _int_parameter(request, "_count", DEFAULT_COUNT, MAX_COUNT)
    offset = _int_parameter(request, "_offset", 0, MAX_OFFSET)
    services = services_of(request)
    await authorize_read(services, principal, patient_id, "fhir.observation.read")
    exported = sorted({code for codes_ in _SEARCH_CODES.values() for code in codes_})
    rows = await services.pool.fetch(
        _OBSERVATION_QUERY,
        patient_id,
        window.since,
        window.until,
        codes,
        exported,
        _BP_CODES,
        count + 1,
        offset,
    )
    more = count > 0 and len(rows) > count
    resources = [observation(row, patient_id) for row in rows[:count]]
    await _audit_read(
        request, principal, "fhir.observation.read", patient_id, len(resources)
    )
    return _bundle(request, resources, count, offset, more)


def detected_issue(row: asyncpg.Record, patient_id: str) -> dict[str, Any]:
    """Map one alarm episode (see ``_ALARM_QUERY``) to a DetectedIssue."""
    key = f"{row['device_id']}/{row['alarm_id']}/{row['started_at'].isoformat()}"
    period: dict[str, str] = {"start": row["started_at"].isoformat()}
    if row["cleared_at"] is not None:
        period["end"] = row["cleared_at"].isoformat()
    return {
        "resourceType": "DetectedIssue",
        "id": _resource_id("alarm", key),
        "identifier": [{"system": ALARM_IDENTIFIER_SYSTEM, "value": key}],
        "status": "final",
        "code": {
            "coding": [{"system": ALARM_KIND_SYSTEM, "code": row["kind"]}],
            "text": (
                f"{row['kind']} ({row['category']} alarm, {row['priority']} priority)"
            ),
        },
        "severity": _SEVERITY[row["priority"]],
        "patient": {"reference": f"Patient/{patient_id}"},
        "identifiedPeriod": period,
        "author": _device_reference(row["device_id"]),
        "detail": row["evidence"],
    }


_ALARM_QUERY = """
    SELECT a.device_id, a.alarm_id, a.started_at,
           (array_agg(a.kind ORDER BY a.seq))[1] AS kind,
           (array_agg(a.priority ORDER BY a.seq))[1] AS priority,
           (array_agg(a.category ORDER BY a.seq))[1] AS category,
           (array_agg(a.evidence ORDER BY a.seq))[1] AS evidence,
           min(m.device_time) FILTER (WHERE a.state = 'cleared') AS cleared_at
    FROM alarms a
    JOIN device_messages m ON m.device_id = a.device_id AND m.seq = a.seq
    WHERE a.patient_id = $1
      AND ($2::timestamptz IS NULL OR a.started_at >= $2)
      AND ($3::timestamptz IS NULL OR a.started_at < $3)
    GROUP BY a.device_id, a.alarm_id, a.started_at
    ORDER BY a.started_at, a.device_id, a.alarm_id
    LIMIT $4 OFFSET $5
"""


async def search_detected_issues(request: Request) -> JSONResponse:
    """Search alarm episodes of one patient as DetectedIssue resources.
    ---
    summary: FHIR R4 search of alarms as DetectedIssue resources
    tags: [fhir]
    security: [{bearerAuth: []}]
    parameters:
      - {name: patient, in: query, required: true, schema: {type: string},
         example: P-0001, description: "patient id or Patient/<id>"}
      - {name: date, in: query, style: form, explode: true,
         schema: {type: array, items: {type: string}, maxItems: 2},
         description: "alarm start: ge, gt, le, lt or eq followed by a date or time"}
      - {name: _count, in: query, schema: {type: integer, minimum: 0, maximum: 1000}}
      - {name: _offset, in: query, schema: {type: integer, minimum: 0}}
    responses:
      "200": {description: A searchset Bundle, content: {application/fhir+json: {}}}
      "400": {$ref: "#/components/responses/FhirError"}
      "401": {$ref: "#/components/responses/FhirError"}
      "403": {$ref: "#/components/responses/FhirError"}
    """
    return await _run_fhir_search(request, _search_detected_issues)


async def _search_detected_issues(
    request: Request, principal: Principal
) -> JSONResponse:
    _check_parameters(request, frozenset({"patient", "date", "_count", "_offset"}))
    patient_id = _patient_parameter(request)
    window = _search_window(request)
    count = _int_parameter(request, "_count", DEFAULT_COUNT, MAX_COUNT)
    offset = _int_parameter(request, "_offset", 0, MAX_OFFSET)
    services = services_of(request)
    await authorize_read(services, principal, patient_id, "fhir.detectedissue.read")
    rows = await services.pool.fetch(
        _ALARM_QUERY, patient_id, window.since, window.until, count + 1, offset
    )
    more = count > 0 and len(rows) > count
    resources = [detected_issue(row, patient_id) for row in rows[:count]]
    await _audit_read(
        request, principal, "fhir.detectedissue.read", patient_id, len(resources)
    )
    return _bundle(request, resources, count, offset, more)


async def _audit_read(
    request: Request, principal: Principal, action: str, patient_id: str, count: int
) -> None:
    services = services_of(request)
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        action,
        patient_id=patient_id,
        detail={"query": str(request.url.query)[:500], "resources": count},
    )


routes = [
    Route("/fhir/Observation", search_observations, methods=["GET"]),
    Route("/fhir/DetectedIssue", search_detected_issues, methods=["GET"]),
]
