"""Observations a clinician records by hand, of what bedside devices cannot measure.

``POST /patients/{patient_id}/observations`` stores air or supplemental oxygen,
ACVPU consciousness and optional manual readings (respiration rate, SpO2, systolic
blood pressure, pulse, temperature). It needs the same consent as a read of the
patient and is audited. NEWS2 on the ward task list takes each parameter from the
newest device or manual value.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal

import asyncpg
import msgspec
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError, patient_id_of
from central.audit import Actor
from central.auth import require_user
from central.consent import authorize_read
from central.services import services_of
from protocol.codes import VitalSign
from protocol.messages import validation_problem

logger = logging.getLogger(__name__)

ACTION = "observation.record"
MAX_BODY_BYTES = 4096
# A chart entry may be written up after the fact, but not for a future time. The
# margin allows for a recording device whose clock runs a little ahead of central's.
MAX_FUTURE_SKEW = timedelta(minutes=5)
MAX_BACKDATE = timedelta(hours=24)


def _plausible(sign: VitalSign) -> msgspec.Meta:
    return msgspec.Meta(ge=sign.value.minimum, le=sign.value.maximum)


class ObservationRequest(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The JSON body of a manual observation; every value is optional."""

    observed_at: Annotated[datetime, msgspec.Meta(tz=True)] | None = None
    on_oxygen: bool | None = None
    consciousness: Literal["A", "C", "V", "P", "U"] | None = None
    respiration_rate: (
        Annotated[float, _plausible(VitalSign.RESPIRATION_RATE)] | None
    ) = None
    spo2: Annotated[float, _plausible(VitalSign.SPO2)] | None = None
    systolic_bp: Annotated[float, _plausible(VitalSign.SYSTOLIC_BP)] | None = None
    pulse: Annotated[float, _plausible(VitalSign.PULSE_RATE)] | None = None
    temperature: Annotated[float, _plausible(VitalSign.TEMPERATURE)] | None = None
    note: Annotated[str, msgspec.Meta(max_length=500)] | None = None


# Manual parameters, in the names NEWS2 uses.
VALUE_FIELDS = (
    "on_oxygen",
    "consciousness",
    "respiration_rate",
    "spo2",
    "systolic_bp",
    "pulse",
    "temperature",
)
_decoder = msgspec.json.Decoder(ObservationRequest)


@dataclass(frozen=True)
class ManualValue:
    """The newest manually recorded value of one parameter."""

    value: Any
    observed_at: datetime


async def record_observation(request: Request) -> JSONResponse:
    """Store one manual observation set for the patient; return it with 201.
    ---
    summary: Record a manual observation
    tags: [care]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/PatientId"}
    requestBody:
      required: true
      content:
        application/json:
          schema: {$ref: "#/components/schemas/Observation"}
    responses:
      "201": {description: The stored values and the new NEWS2 score}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    await authorize_read(services, principal, patient_id, ACTION)
    now = datetime.now(UTC)
    observation = _parse(await request.body(), now)
    recorded_by = principal.display_name or f"user {principal.user_id}"

    async with services.pool.acquire() as connection, connection.transaction():
        row = await _insert(connection, patient_id, principal.user_id, recorded_by,
                            observation, now)
        await services.audit.record(
            connection,
            Actor.user(principal.user_id),
            ACTION,
            patient_id=patient_id,
            detail={
                "observation_id": row["id"],
                "parameters": [f for f in VALUE_FIELDS if row[f] is not None],
            },
        )
    services.counters.increment("observations.recorded")
    logger.info(
        "manual observation %s recorded for patient %s by user %s",
        row["id"], patient_id, principal.user_id,
    )
    return JSONResponse(observation_body(row), status_code=201)


def _parse(body: bytes, now: datetime) -> ObservationRequest:
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"body: at most {MAX_BODY_BYTES} bytes")
    try:
        observation = _decoder.decode(body)
    except msgspec.ValidationError as exc:
        problem = validation_problem(exc, whole="body")
        raise ApiError(400, str(problem), field=problem.field) from None
    except msgspec.DecodeError:
        raise ApiError(400, "body: expected a JSON object", field="body") from None
    if all(getattr(observation, name) is None for name in VALUE_FIELDS):
        names = ", ".join(VALUE_FIELDS)
        raise ApiError(400, f"body: record at least one of {names}", field="body")
    if observation.note is not None and "\x00" in observation.note:
        raise ApiError(400, "note: must not contain U+0000", field="note")
    observed_at = observation.observed_at
    if observed_at is not None and not (
        now - MAX_BACKDATE <= observed_at <= now + MAX_FUTURE_SKEW
    ):
        raise ApiError(
            400,
            f"observed_at: {observed_at.isoformat()} must be within the last 24 h "
            "and not in the future",
            field="observed_at",
        )
    return observation


async def _insert(
    connection: asyncpg.Connection,
    patient_id: str,
    user_id: int,
    recorded_by: str,
    observation: ObservationRequest,
    now: datetime,
) -> asyncpg.Record:
    return await connection.fetchrow(
        """
        INSERT INTO manual_observations (patient_id, user_id, recorded_by,
            observed_at, on_oxygen, consciousness, respiration_rate, spo2,
            systolic_bp, pulse, temperature, note)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
        RETURNING *
        """,
        patient_id,
        user_id,
        recorded_by,
        (observation.observed_at or now).astimezone(UTC),
        observation.on_oxygen,
        observation.consciousness,
        observation.respiration_rate,
        observation.spo2,
        observation.systolic_bp,
        observation.pulse,
        observation.temperature,
        observation.note,
    )


def observation_body(row: asyncpg.Record) -> dict[str, Any]:
    """Return a stored observation as JSON, with only the values it recorded."""
    return {
        "id": row["id"],
        "patient_id": row["patient_id"],
        "observed_at": row["observed_at"].isoformat(),
        "recorded_at": row["recorded_at"].isoformat(),
        "recorded_by": row["recorded_by"],
        "values": {f: row[f] for f in VALUE_FIELDS if row[f] is not None},
        "note": row["note"],
    }


async def latest_manual_values(
    pool: asyncpg.Pool, patient_ids: list[str], since: datetime, until: datetime
) -> dict[str, dict[str, ManualValue]]:
    """Return, per patient, the newest value of each parameter observed in the range.

    The range is [since, until]. Manual observations are few (hourly at most), so
    reading every row of the range costs little.
    """
    rows = await pool.fetch(
        """
        SELECT * FROM manual_observations
        WHERE patient_id = ANY($1::text[]) AND observed_at >= $2 AND observed_at <= $3
        ORDER BY observed_at DESC, id DESC
        """,
        patient_ids,
        since,
        until,
    )
    latest: dict[str, dict[str, ManualValue]] = {}
    for row in rows:
        values = latest.setdefault(row["patient_id"], {})
        for name in VALUE_FIELDS:
            if row[name] is not None and name not in values:
                values[name] = ManualValue(row[name], row["observed_at"])
    return latest


async def latest_full_assessment(
    pool: asyncpg.Pool, patient_ids: list[str]
) -> dict[str, datetime]:
    """Return per patient the time of the newest observation that assessed both
    air or oxygen and consciousness, the NEWS2 parts only a person can supply."""
    rows = await pool.fetch(
        """
        SELECT patient_id, max(observed_at) AS observed_at FROM manual_observations
        WHERE patient_id = ANY($1::text[])
          AND on_oxygen IS NOT NULL AND consciousness IS NOT NULL
        GROUP BY patient_id
        """,
        patient_ids,
    )
    return {row["patient_id"]: row["observed_at"] for row in rows}


routes = [
    Route(
        "/patients/{patient_id}/observations", record_observation, methods=["POST"]
    ),
]
