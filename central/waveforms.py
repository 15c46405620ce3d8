"""ECG retrieval over a time range: raw samples, or min/max buckets for long ranges.

``GET /patients/{patient_id}/waveform?from=&to=&lead=&max_points=`` returns each
lead's samples in [from, to). When a lead has more than ``max_points`` samples in
the range, it returns buckets of equal duration with the minimum and maximum sample
instead. A short spike such as a pacing artefact or an R wave survives min/max
downsampling, which a mean would flatten. Buckets without samples are left out,
so a gap in the recording stays visible. Consent is checked and the read is audited.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import numpy as np
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError, parse_int, parse_range, patient_id_of
from central.audit import Actor
from central.auth import require_user
from central.consent import authorize_read
from central.services import services_of
from protocol.codes import KNOWN_ECG_LEADS
from protocol.messages import MAX_WAVEFORM_SAMPLES

logger = logging.getLogger(__name__)

ACTION = "waveform.read"
DEFAULT_RANGE = timedelta(minutes=1)
# An hour of one lead at 250 Hz is 900,000 samples, decoded in this process.
# TODO: longer ranges need the min/max buckets computed in PostgreSQL.
MAX_RANGE = timedelta(hours=1)
DEFAULT_MAX_POINTS = 5000
MAX_POINTS = 50_000
# Maximum duration of one chunk (4096 samples at the minimum rate, 125 Hz). A chunk
# that starts this long before ``from`` may still reach into the range.
MAX_CHUNK_SPAN = timedelta(seconds=MAX_WAVEFORM_SAMPLES / 125.0)


@dataclass(frozen=True)
class WaveformQuery:
    """The validated query of one waveform request."""

    start: datetime
    end: datetime
    lead: str | None
    max_points: int


def _parse_query(request: Request) -> WaveformQuery:
    start, end = parse_range(request, DEFAULT_RANGE)
    if end - start > MAX_RANGE:
        raise ApiError(
            400,
            f"from: the range may span at most {MAX_RANGE}, got {end - start}; "
            "request it in parts",
        )
    lead = request.query_params.get("lead")
    if lead is not None and lead not in KNOWN_ECG_LEADS:
        known = ", ".join(sorted(KNOWN_ECG_LEADS))
        raise ApiError(400, f"lead: unknown ECG lead {lead!r}; known: {known}")
    max_points = parse_int(
        "max_points",
        request.query_params.get("max_points"),
        DEFAULT_MAX_POINTS,
        100,
        MAX_POINTS,
    )
    return WaveformQuery(start, end, lead, max_points)


async def get_waveform(request: Request) -> JSONResponse:
    """Return the ECG of [from, to) per lead, raw or as min/max buckets.
    ---
    summary: ECG of [from, to) per lead, raw or as min/max buckets
    tags: [patients]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/PatientId"}
      - {$ref: "#/components/parameters/From"}
      - {$ref: "#/components/parameters/To"}
      - name: lead
        in: query
        schema: {type: string}
        description: One ECG lead, e.g. II
      - name: max_points
        in: query
        schema: {type: integer, minimum: 100, maximum: 50000, default: 5000}
    responses:
      "200": {description: Samples per lead}
      "400": {$ref: "#/components/responses/BadRequest"}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    await authorize_read(services, principal, patient_id, ACTION)
    query = _parse_query(request)

    chunks = await _load_chunks(services.pool, patient_id, query)
    by_lead: dict[str, list[asyncpg.Record]] = {}
    for chunk in chunks:
        by_lead.setdefault(chunk["lead"], []).append(chunk)
    # Up to an hour of samples: the numpy work runs off the event loop.
    leads = await asyncio.to_thread(_summarise_leads, by_lead, query)

    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        ACTION,
        patient_id=patient_id,
        detail={
            "from": query.start.isoformat(),
            "to": query.end.isoformat(),
            "leads": sorted(by_lead),
        },
    )
    return JSONResponse(
        {
            "patient_id": patient_id,
            "from": query.start.isoformat(),
            "to": query.end.isoformat(),
            "leads": leads,
        }
    )


def _summarise_leads(
    by_lead: dict[str, list[asyncpg.Record]], query: WaveformQuery
) -> list[dict[str, Any]]:
    return [
        summarise_lead(lead, rows, query.start, query.end, query.max_points)
        for lead, rows in sorted(by_lead.items())
    ]


async def _load_chunks(
    pool: asyncpg.Pool, patient_id: str, query: WaveformQuery
) -> list[asyncpg.Record]:
    return await pool.fetch(
        """
        SELECT lead, sample_rate_hz, first_sample_at, first_sample_index, scale_uv,
               samples
        FROM waveform_chunks
        WHERE patient_id = $1 AND first_sample_at >= $2 AND first_sample_at < $3
          AND ($4::text IS NULL OR lead = $4)
        ORDER BY lead, first_sample_at, device_id, seq
        """,
        patient_id,
        query.start - MAX_CHUNK_SPAN,
        query.end,
        query.lead,
    )


def summarise_lead(
    lead: str,
    chunks: list[asyncpg.Record] | list[dict[str, Any]],
    start: datetime,
    end: datetime,
    max_points: int,
) -> dict[str, Any]:
    """Return one lead's samples in [start, end), raw or as min/max buckets.

    Values are in microvolts. Raw segments keep each chunk's sample numbering so a
    client can see gaps between them.
    """
    segments = [_clip(chunk, start, end) for chunk in chunks]
    segments = [segment for segment in segments if segment is not None]
    total = sum(len(segment["values"]) for segment in segments)
    if total <= max_points:
        return {
            "lead": lead,
            "resolution": {"mode": "raw"},
            "sample_count": total,
            "segments": [_raw_segment(segment) for segment in segments],
        }
    # Each bucket yields two points, its minimum and its maximum.
    bucket_s = (end - start).total_seconds() / (max_points // 2)
    return {
        "lead": lead,
        "resolution": {"mode": "minmax", "bucket_s": bucket_s},
        "sample_count": total,
        "buckets": _min_max_buckets(segments, start, bucket_s),
    }


def _clip(
    chunk: asyncpg.Record | dict[str, Any], start: datetime, end: datetime
) -> dict[str, Any] | None:
    rate = chunk["sample_rate_hz"]
    values = np.asarray(chunk["samples"], dtype=np.float64) * chunk["scale_uv"]
    offsets = (chunk["first_sample_at"] - start).total_seconds() + (
        np.arange(len(values)) / rate
    )
    inside = (offsets >= 0) & (offsets < (end - start).total_seconds())
    if not inside.any():
        return None
    first = int(np.argmax(inside))
    return {
        "sample_rate_hz": rate,
        "first_sample_index": chunk["first_sample_index"] + first,
        "first_sample_at": chunk["first_sample_at"] + timedelta(seconds=first / rate),
        "values": values[inside],
        "offsets": offsets[inside],
    }


def _raw_segment(segment: dict[str, Any]) -> dict[str, Any]:
    return {
        "first_sample_at": segment["first_sample_at"].isoformat(),
        "first_sample_index": segment["first_sample_index"],
        "sample_rate_hz": segment["sample_rate_hz"],
        "samples_uv": [round(float(value), 3) for value in segment["values"]],
    }


def _min_max_buckets(
    segments: list[dict[str, Any]], start: datetime, bucket_s: float
) -> list[dict[str, Any]]:
    values = np.concatenate([segment["values"] for segment in segments])
    offsets = np.concatenate([segment["offsets"] for segment in segments])
    buckets = np.floor(offsets / bucket_s).astype(np.int64)
    order = np.argsort(buckets, kind="stable")
    buckets, values = buckets[order], values[order]
    starts, first_positions = np.unique(buckets, return_index=True)
    minima = np.minimum.reduceat(values, first_positions)
    maxima = np.maximum.reduceat(values, first_positions)
    counts = np.diff(np.append(first_positions, len(values)))
    return [
        {
            "at": (start + timedelta(seconds=float(bucket) * bucket_s)).isoformat(),
            "min_uv": round(float(low), 3),
            "max_uv": round(float(high), 3),
            "samples": int(count),
        }
        for bucket, low, high, count in zip(starts, minima, maxima, counts, strict=True)
    ]


routes = [Route("/patients/{patient_id}/waveform", get_waveform, methods=["GET"])]
