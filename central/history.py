"""The patient timeline: per-minute heart-rate statistics and alarms, page by page.

A page covers at most ``page_minutes`` from ``since``. Its ``next_since`` is the
``since`` of the next page, or None on the last one, so a client can walk a long
range without gaps.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import asyncpg

from protocol.codes import VitalSign

HEART_RATE_CODE = VitalSign.HEART_RATE.value.mdc_reference_id
MAX_ALARMS_PER_PAGE = 1000


async def load_history(
    pool: asyncpg.Pool,
    patient_id: str,
    since: datetime,
    until: datetime,
    page_minutes: int,
) -> dict[str, object]:
    """Return one page of the timeline of ``patient_id`` starting at ``since``."""
    page_end = min(until, since + timedelta(minutes=page_minutes))
    minutes = await pool.fetch(
        """
        SELECT date_bin('1 minute', measured_at, TIMESTAMPTZ '2000-01-01Z') AS minute,
               min(value) AS min, max(value) AS max, avg(value) AS mean,
               count(*) AS samples
        FROM vitals
        WHERE patient_id = $1 AND code = $2 AND measured_at >= $3 AND measured_at < $4
        GROUP BY minute ORDER BY minute
        """,
        patient_id,
        HEART_RATE_CODE,
        since,
        page_end,
    )
    alarms = await pool.fetch(
        """
        SELECT m.device_time AS at, a.alarm_id, a.kind, a.priority, a.category,
               a.state, a.started_at, a.evidence, a.device_id
        FROM alarms a
        JOIN device_messages m ON m.device_id = a.device_id AND m.seq = a.seq
        WHERE a.patient_id = $1 AND m.device_time >= $2 AND m.device_time < $3
        ORDER BY m.device_time, a.device_id, a.seq
        LIMIT $4
        """,
        patient_id,
        since,
        page_end,
        MAX_ALARMS_PER_PAGE + 1,
    )
    return {
        "patient_id": patient_id,
        "since": since.isoformat(),
        "until": page_end.isoformat(),
        "next_since": page_end.isoformat() if page_end < until else None,
        "heart_rate": {
            "code": HEART_RATE_CODE,
            "unit": VitalSign.HEART_RATE.value.unit,
            "minutes": [_minute(row) for row in minutes],
        },
        "alarms": [_alarm(row) for row in alarms[:MAX_ALARMS_PER_PAGE]],
        "alarms_truncated": len(alarms) > MAX_ALARMS_PER_PAGE,
    }


def _minute(row: asyncpg.Record) -> dict[str, object]:
    return {
        "minute": row["minute"].isoformat(),
        "min": row["min"],
        "max": row["max"],
        "mean": round(row["mean"], 2),
        "samples": row["samples"],
    }


def _alarm(row: asyncpg.Record) -> dict[str, object]:
    return {
        "at": row["at"].isoformat(),
        "alarm_id": row["alarm_id"],
        "kind": row["kind"],
        "priority": row["priority"],
        "category": row["category"],
        "state": row["state"],
        "started_at": row["started_at"].isoformat(),
        "evidence": row["evidence"],
        "device_id": row["device_id"],
    }
