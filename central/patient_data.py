"""Time-range reads of a patient's recorded data: numerics and the history timeline.

``GET /patients/{id}/vitals`` returns raw measurements for ranges up to
``RAW_VITALS_MAX_RANGE`` and per-bucket means (with min, max and count) for longer
ones, or at the bucket length the ``resolution`` parameter requests. The response's
``resolution`` field names the form returned. ``GET /patients/{id}/history`` pages
through the timeline of ``central.history``. Each read checks consent and is audited.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timedelta
from urllib.parse import urlencode

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError, parse_int, parse_range, patient_id_of
from central.audit import Actor
from central.auth import require_user
from central.consent import authorize_read
from central.history import Cursor, HistoryQuery, load_history, parse_kinds
from central.services import services_of
from protocol.codes import BY_REFERENCE_ID

logger = logging.getLogger(__name__)

DEFAULT_WINDOW = timedelta(hours=1)
MAX_VITALS_LIMIT = 10_000
DEFAULT_VITALS_LIMIT = 1_000
# Up to an hour of 1 Hz numerics is returned as measured. Longer ranges are averaged
# into about MAX_AUTO_BUCKETS buckets per code unless the request sets a resolution.
RAW_VITALS_MAX_RANGE = timedelta(hours=1)
MAX_AUTO_BUCKETS = 500
MAX_BUCKET_S = 86_400
DEFAULT_HISTORY_LIMIT = 200
MAX_HISTORY_LIMIT = 1000
DEFAULT_HISTORY_INTERVAL_S = 60


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def _time_window(request: Request) -> tuple[datetime, datetime]:
    return parse_range(request, DEFAULT_WINDOW)


def _vital(row: asyncpg.Record) -> dict[str, object]:
    return {
        "code": row["code"],
        "value": row["value"],
        "unit": row["unit"],
        "measured_at": _iso(row["measured_at"]),
        "device_id": row["device_id"],
    }


async def get_vitals(request: Request) -> JSONResponse:
    """Return numerics in [since, until), oldest first, optionally for one code.
    ---
    summary: Numerics of a patient in [since, until), raw or averaged
    tags: [patients]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/PatientId"}
      - {$ref: "#/components/parameters/Since"}
      - {$ref: "#/components/parameters/Until"}
      - name: code
        in: query
        schema: {type: string}
        description: One vital-sign code, e.g. MDC_PULS_OXIM_SAT_O2
      - name: limit
        in: query
        schema: {type: integer, minimum: 1, maximum: 10000, default: 1000}
      - name: resolution
        in: query
        schema: {type: string, default: raw}
        description: raw, auto, or a bucket length of 1 to 86400 seconds
    responses:
      "200": {description: Measurements or averaged buckets}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    await authorize_read(services, principal, patient_id, "vitals.read")
    since, until = _time_window(request)

    code = request.query_params.get("code")
    if code is not None and code not in BY_REFERENCE_ID:
        known = ", ".join(sorted(BY_REFERENCE_ID))
        raise ApiError(400, f"code: unknown vital-sign code {code!r}; known: {known}")
    limit = parse_int(
        "limit",
        request.query_params.get("limit"),
        DEFAULT_VITALS_LIMIT,
        1,
        MAX_VITALS_LIMIT,
    )
    bucket_s = _bucket_seconds(request.query_params.get("resolution"), since, until)

    if bucket_s is None:
        body = await _raw_vitals(services.pool, patient_id, since, until, code, limit)
        rows = len(body["measurements"])
    else:
        body = await _averaged_vitals(
            services.pool, patient_id, since, until, code, limit, bucket_s
        )
        rows = len(body["buckets"])

    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        "vitals.read",
        patient_id=patient_id,
        detail={
            "since": since.isoformat(),
            "until": until.isoformat(),
            "code": code,
            "rows": rows,
        },
    )
    head = {
        "patient_id": patient_id,
        "since": since.isoformat(),
        "until": until.isoformat(),
    }
    return JSONResponse({**head, **body})


def _bucket_seconds(value: str | None, since: datetime, until: datetime) -> int | None:
    """Return the bucket length ``resolution`` requests, or None for raw values."""
    span_s = (until - since).total_seconds()
    # Without the parameter the response keeps the raw shape older clients read, so
    # a range a little over an hour does not silently switch to buckets.
    if value is None or value == "raw":
        return None
    if value == "auto":
        if until - since <= RAW_VITALS_MAX_RANGE:
            return None
        return max(1, math.ceil(span_s / MAX_AUTO_BUCKETS))
    try:
        seconds = int(value)
    except ValueError:
        seconds = 0
    if not 1 <= seconds <= MAX_BUCKET_S:
        raise ApiError(
            400,
            f"resolution: expected raw, auto or a bucket length of 1 to "
            f"{MAX_BUCKET_S} seconds, got {value!r}",
        )
    return seconds


async def _raw_vitals(
    pool: asyncpg.Pool,
    patient_id: str,
    since: datetime,
    until: datetime,
    code: str | None,
    limit: int,
) -> dict[str, object]:
    rows = await pool.fetch(
        """
        SELECT code, value, unit, measured_at, device_id FROM vitals
        WHERE patient_id = $1 AND measured_at >= $2 AND measured_at < $3
          AND ($4::text IS NULL OR code = $4)
        ORDER BY measured_at, device_id, seq, ordinal
        LIMIT $5
        """,
        patient_id,
        since,
        until,
        code,
        limit + 1,
    )
    return {
        "resolution": {"mode": "raw"},
        "measurements": [_vital(row) for row in rows[:limit]],
        "truncated": len(rows) > limit,
    }


async def _averaged_vitals(
    pool: asyncpg.Pool,
    patient_id: str,
    since: datetime,
    until: datetime,
    code: str | None,
    limit: int,
    bucket_s: int,
) -> dict[str, object]:
    rows = await pool.fetch(
        """
        SELECT date_bin($5, measured_at, TIMESTAMPTZ '2000-01-01Z') AS at, code, unit,
               avg(value) AS mean, min(value) AS min, max(value) AS max,
               count(*) AS count
        FROM vitals
        WHERE patient_id = $1 AND measured_at >= $2 AND measured_at < $3
          AND ($4::text IS NULL OR code = $4)
        GROUP BY 1, code, unit
        ORDER BY 1, code
        LIMIT $6
        """,
        patient_id,
        since,
        until,
        code,
        timedelta(seconds=bucket_s),
        limit + 1,
    )
    buckets = [
        {
            "at": row["at"].isoformat(),
            "code": row["code"],
            "unit": row["unit"],
            "mean": round(row["mean"], 2),
            "min": row["min"],
            "max": row["max"],
            "count": row["count"],
        }
        for row in rows[:limit]
    ]
    return {
        "resolution": {"mode": "mean", "bucket_s": bucket_s},
        "buckets": buckets,
        "truncated": len(rows) > limit,
    }


async def get_history(request: Request) -> JSONResponse:
    """Return one page of the patient's timeline (see ``central.history``).
    ---
    summary: One page of a patient's timeline
    tags: [patients]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/PatientId"}
      - {$ref: "#/components/parameters/Since"}
      - {$ref: "#/components/parameters/Until"}
      - name: kinds
        in: query
        schema: {type: string}
        description: Comma-separated list of vitals, observation, alarm, device, gap
      - name: interval_s
        in: query
        schema: {type: integer, minimum: 1, maximum: 86400, default: 60}
        description: Vitals averaging interval in seconds
      - name: limit
        in: query
        schema: {type: integer, minimum: 1, maximum: 1000, default: 200}
      - name: cursor
        in: query
        schema: {type: string}
        description: next_cursor of the previous page
    responses:
      "200": {description: "Entries oldest first, with the next page link"}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    await authorize_read(services, principal, patient_id, "history.read")
    query = _history_query(request, patient_id)
    page = await load_history(services.pool, query)
    page["next"] = _next_link(request, query, page["next_cursor"])
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        "history.read",
        patient_id=patient_id,
        detail={
            "since": query.since.isoformat(),
            "until": query.until.isoformat(),
            "kinds": list(query.kinds),
            "entries": len(page["entries"]),
        },
    )
    return JSONResponse(page)


def _history_query(request: Request, patient_id: str) -> HistoryQuery:
    params = request.query_params
    since, until = _time_window(request)
    interval_s = parse_int(
        "interval_s",
        params.get("interval_s"),
        DEFAULT_HISTORY_INTERVAL_S,
        1,
        MAX_BUCKET_S,
    )
    limit = parse_int(
        "limit", params.get("limit"), DEFAULT_HISTORY_LIMIT, 1, MAX_HISTORY_LIMIT
    )
    cursor = params.get("cursor")
    return HistoryQuery(
        patient_id=patient_id,
        since=since,
        until=until,
        kinds=parse_kinds(params.get("kinds")),
        interval=timedelta(seconds=interval_s),
        limit=limit,
        after=None if cursor is None else Cursor.decode(cursor),
    )


def _next_link(request: Request, query: HistoryQuery, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    # The range is spelled out, because a default "until" of now would move.
    params = {
        "since": query.since.isoformat(),
        "until": query.until.isoformat(),
        "kinds": ",".join(query.kinds),
        "interval_s": str(int(query.interval.total_seconds())),
        "limit": str(query.limit),
        "cursor": cursor,
    }
    return f"{request.url.path}?{urlencode(params)}"


routes = [
    Route("/patients/{patient_id}/vitals", get_vitals, methods=["GET"]),
    Route("/patients/{patient_id}/history", get_history, methods=["GET"]),
]
