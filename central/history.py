"""The patient timeline: vitals summaries, alarms, device events, gaps, observations.

Entries of every kind are merged into one order, (``at``, kind, key), and served a
page of ``limit`` entries at a time. ``next_cursor`` names the last entry served, so
the next page starts right after it even when entries share a time (keyset
pagination: no entry is skipped or repeated while data is added behind the page).

Kinds, in their order at equal times:

- ``vitals``: per ``interval_s`` bucket, min, max, mean and count of each numeric
  code. Buckets are aligned to multiples of the interval since 2000-01-01 UTC, so
  the first may start before ``since``; only samples inside the range count.
- ``observation``: a manual observation set.
- ``alarm``: each raise or clear of a physiological alarm, at the device's time of
  the message, with its acknowledgements and escalation.
- ``device``: a device connecting (its ``device.hello``), disconnecting (central's
  audit row of the closed connection) and each raise or clear of a technical alarm.
- ``gap``: data a device discarded (``vitals.gap``), from ``first_at`` to ``last_at``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from central.api import ApiError
from central.observations import VALUE_FIELDS

KIND_RANK = {"vitals": 0, "observation": 1, "alarm": 2, "device": 3, "gap": 4}
KINDS = tuple(KIND_RANK)
# Zero-padded so that the text order of keys is the numeric order of sequence
# numbers, in PostgreSQL ("C" collation) and in Python alike.
_SEQ_DIGITS = 20


@dataclass(frozen=True)
class Cursor:
    """The position of the last entry served: its time, kind rank and key."""

    at: datetime
    rank: int
    key: str

    def encode(self) -> str:
        raw = json.dumps([self.at.isoformat(), self.rank, self.key])
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str) -> Cursor:
        problem = "cursor: invalid; pass the next_cursor of the previous page unchanged"
        try:
            padded = text + "=" * (-len(text) % 4)
            at, rank, key = json.loads(base64.urlsafe_b64decode(padded))
            cursor = cls(datetime.fromisoformat(at), int(rank), str(key))
        except (ValueError, TypeError, binascii.Error):
            raise ApiError(400, problem) from None
        if cursor.at.tzinfo is None or cursor.rank not in KIND_RANK.values():
            raise ApiError(400, problem)
        return cursor


@dataclass(frozen=True)
class HistoryQuery:
    """The parameters of one history request, validated."""

    patient_id: str
    since: datetime
    until: datetime
    kinds: tuple[str, ...]
    interval: timedelta
    limit: int
    after: Cursor | None


Row = tuple[datetime, int, str, dict[str, Any]]


def parse_kinds(value: str | None) -> tuple[str, ...]:
    """Parse the ``kinds`` parameter, a comma-separated list; raise a 400 if bad."""
    if value is None:
        return KINDS
    kinds = tuple(part.strip() for part in value.split(",") if part.strip())
    unknown = sorted(set(kinds) - set(KINDS))
    if unknown or not kinds:
        raise ApiError(
            400,
            f"kinds: unknown kind {unknown[0] if unknown else value!r}; "
            f"use a comma-separated list of {', '.join(KINDS)}",
        )
    return tuple(kind for kind in KINDS if kind in kinds)


async def load_history(pool: asyncpg.Pool, query: HistoryQuery) -> dict[str, Any]:
    """Return one page of the timeline with the cursor of the next page."""
    rows: list[Row] = []
    for kind in query.kinds:
        rows += await _LOADERS[kind](pool, query)
    rows.sort(key=lambda row: (row[0], row[1], row[2]))
    page = rows[: query.limit]
    more = len(rows) > query.limit
    await _attach_alarm_responses(pool, query.patient_id, page)
    next_cursor = None
    if more:
        at, rank, key, _ = page[-1]
        next_cursor = Cursor(at, rank, key).encode()
    return {
        "patient_id": query.patient_id,
        "since": query.since.isoformat(),
        "until": query.until.isoformat(),
        "kinds": list(query.kinds),
        "interval_s": int(query.interval.total_seconds()),
        "entries": [entry for *_, entry in page],
        "next_cursor": next_cursor,
    }


def _after(query: HistoryQuery, kind: str, at_sql: str, key_sql: str) -> str:
    """Return SQL that keeps the entries of ``kind`` after the cursor ($4, $5)."""
    if query.after is None:
        # The parameters are still referenced, so PostgreSQL can type them.
        return "($4::timestamptz IS NULL AND $5::text IS NULL)"
    rank = KIND_RANK[kind]
    if rank > query.after.rank:
        return f"({at_sql} >= $4 AND $5::text IS NOT NULL)"
    if rank < query.after.rank:
        return f"({at_sql} > $4 AND $5::text IS NOT NULL)"
    return f'({at_sql}, {key_sql} COLLATE "C") > ($4, $5 COLLATE "C")'


def _cursor_args(query: HistoryQuery) -> list[object]:
    if query.after is None:
        return [None, None]
    return [query.after.at, query.after.key]


def _seq_key(device_sql: str, seq_sql: str) -> str:
    return f"{device_sql} || '/' || lpad({seq_sql}::text, {_SEQ_DIGITS}, '0')"


async def _vitals(pool: asyncpg.Pool, query: HistoryQuery) -> list[Row]:
    rows = await pool.fetch(
        f"""
        SELECT at, jsonb_object_agg(code, jsonb_build_object(
                   'unit', unit, 'min', min, 'max', max,
                   'mean', round(mean::numeric, 2), 'count', count)) AS vitals
        FROM (
            SELECT date_bin($6, measured_at, TIMESTAMPTZ '2000-01-01Z') AS at,
                   code, unit, min(value) AS min, max(value) AS max,
                   avg(value) AS mean, count(*) AS count
            FROM vitals
            WHERE patient_id = $1 AND measured_at >= $2 AND measured_at < $3
              -- Buckets kept after the cursor start at or after its time, so
              -- older samples cannot count towards them.
              AND ($4::timestamptz IS NULL OR measured_at >= $4)
            GROUP BY 1, code, unit
        ) per_code
        WHERE {_after(query, "vitals", "at", "''")}
        GROUP BY at ORDER BY at LIMIT $7
        """,
        query.patient_id,
        query.since,
        query.until,
        *_cursor_args(query),
        query.interval,
        query.limit + 1,
    )
    result = []
    for row in rows:
        vitals = row["vitals"]  # the pool decodes jsonb (central.db.pool)
        for summary in vitals.values():
            summary["mean"] = float(summary["mean"])
        entry = {
            "kind": "vitals",
            "at": row["at"].isoformat(),
            "until": (row["at"] + query.interval).isoformat(),
            "vitals": vitals,
        }
        result.append((row["at"], KIND_RANK["vitals"], "", entry))
    return result


async def _page_of_table(
    pool: asyncpg.Pool, query: HistoryQuery, table: str, kind: str, at: str, key: str
) -> list[asyncpg.Record]:
    """Fetch one page of a table's rows about the patient, ordered by ``at``, ``key``.

    ``table``, ``at`` and ``key`` are SQL written in this module, never user input.
    """
    return await pool.fetch(
        f"""
        SELECT *, {key} AS key FROM {table}
        WHERE patient_id = $1 AND {at} >= $2 AND {at} < $3
          AND {_after(query, kind, at, key)}
        ORDER BY {at}, {key} COLLATE "C" LIMIT $6
        """,
        query.patient_id,
        query.since,
        query.until,
        *_cursor_args(query),
        query.limit + 1,
    )


async def _observations(pool: asyncpg.Pool, query: HistoryQuery) -> list[Row]:
    key = f"lpad(id::text, {_SEQ_DIGITS}, '0')"
    rows = await _page_of_table(
        pool, query, "manual_observations", "observation", "observed_at", key
    )
    result = []
    for row in rows:
        entry = {
            "kind": "observation",
            "at": row["observed_at"].isoformat(),
            "id": row["id"],
            "recorded_by": row["recorded_by"],
            "values": {f: row[f] for f in VALUE_FIELDS if row[f] is not None},
            "note": row["note"],
        }
        result.append((row["observed_at"], KIND_RANK["observation"], row["key"], entry))
    return result


async def _alarm_rows(
    pool: asyncpg.Pool, query: HistoryQuery, kind: str, category: str
) -> list[asyncpg.Record]:
    key = _seq_key("a.device_id", "a.seq")
    return await pool.fetch(
        f"""
        SELECT m.device_time AS at, {key} AS key, a.alarm_id, a.kind, a.priority,
               a.category, a.state, a.started_at, a.evidence, a.device_id
        FROM alarms a
        JOIN device_messages m ON m.device_id = a.device_id AND m.seq = a.seq
        WHERE a.patient_id = $1 AND m.device_time >= $2 AND m.device_time < $3
          AND a.category = $7
          AND {_after(query, kind, "m.device_time", key)}
        ORDER BY m.device_time, {key} COLLATE "C" LIMIT $6
        """,
        query.patient_id,
        query.since,
        query.until,
        *_cursor_args(query),
        query.limit + 1,
        category,
    )


def _alarm_entry(kind: str, row: asyncpg.Record) -> dict[str, Any]:
    entry: dict[str, Any] = {"kind": kind, "at": row["at"].isoformat()}
    if kind == "device":
        entry["event"] = "technical_alarm"
    entry.update(
        alarm_id=row["alarm_id"],
        alarm_kind=row["kind"],
        priority=row["priority"],
        category=row["category"],
        state=row["state"],
        started_at=row["started_at"].isoformat(),
        evidence=row["evidence"],
        device_id=row["device_id"],
        acknowledgements=[],
        escalation=None,
    )
    return entry


async def _alarms(pool: asyncpg.Pool, query: HistoryQuery) -> list[Row]:
    rows = await _alarm_rows(pool, query, "alarm", "physiological")
    rank = KIND_RANK["alarm"]
    return [(row["at"], rank, row["key"], _alarm_entry("alarm", row)) for row in rows]


async def _device_events(pool: asyncpg.Pool, query: HistoryQuery) -> list[Row]:
    rank = KIND_RANK["device"]
    technical = await _alarm_rows(pool, query, "device", "technical")
    result = [
        (row["at"], rank, row["key"], _alarm_entry("device", row)) for row in technical
    ]
    hello_key = _seq_key("device_id", "seq")
    hellos = await pool.fetch(
        f"""
        SELECT device_time AS at, device_id, {hello_key} AS key FROM device_messages
        WHERE patient_id = $1 AND type = 'device.hello'
          AND device_time >= $2 AND device_time < $3
          AND {_after(query, "device", "device_time", hello_key)}
        ORDER BY device_time, {hello_key} COLLATE "C" LIMIT $6
        """,
        query.patient_id,
        query.since,
        query.until,
        *_cursor_args(query),
        query.limit + 1,
    )
    for row in hellos:
        entry = {
            "kind": "device",
            "at": row["at"].isoformat(),
            "event": "connected",
            "device_id": row["device_id"],
        }
        result.append((row["at"], rank, row["key"], entry))
    for row in await _disconnects(pool, query):
        entry = {
            "kind": "device",
            "at": row["at"].isoformat(),
            "event": "disconnected",
            "device_id": row["device_id"],
        }
        result.append((row["at"], rank, row["key"], entry))
    return result


async def _disconnects(pool: asyncpg.Pool, query: HistoryQuery) -> list[asyncpg.Record]:
    # Central audits each closed device connection without a patient. It belongs to
    # this patient when the device's last message before it was stored for them.
    key = f"'~audit/' || lpad(l.id::text, {_SEQ_DIGITS}, '0')"
    return await pool.fetch(
        f"""
        SELECT l.at, l.actor_id AS device_id, {key} AS key
        FROM audit_log l
        WHERE l.actor_kind = 'device' AND l.action = 'device.disconnect'
          AND l.outcome = 'ok' AND l.at >= $2 AND l.at < $3
          AND l.actor_id IN (
              SELECT DISTINCT device_id FROM device_messages
              WHERE patient_id = $1 AND type = 'device.hello' AND device_time < $3
          )
          AND (
              SELECT m.patient_id FROM device_messages m
              WHERE m.device_id = l.actor_id AND m.received_at <= l.at
              ORDER BY m.seq DESC LIMIT 1
          ) = $1
          AND {_after(query, "device", "l.at", key)}
        ORDER BY l.at, {key} COLLATE "C" LIMIT $6
        """,
        query.patient_id,
        query.since,
        query.until,
        *_cursor_args(query),
        query.limit + 1,
    )


async def _gaps(pool: asyncpg.Pool, query: HistoryQuery) -> list[Row]:
    key = _seq_key("device_id", "seq")
    rows = await _page_of_table(pool, query, "data_gaps", "gap", "first_at", key)
    result = []
    for row in rows:
        entry = {
            "kind": "gap",
            "at": row["first_at"].isoformat(),
            "until": row["last_at"].isoformat(),
            "device_id": row["device_id"],
            "reason": row["reason"],
            "lead": row["lead"],
            "sample_count": row["sample_count"],
            "messages_dropped": row["messages_dropped"],
        }
        result.append((row["first_at"], KIND_RANK["gap"], row["key"], entry))
    return result


async def _attach_alarm_responses(
    pool: asyncpg.Pool, patient_id: str, page: list[Row]
) -> None:
    """Add acknowledgements and escalations to the alarm entries of ``page``."""
    entries = [entry for *_, entry in page if "alarm_id" in entry]
    if not entries:
        return
    alarm_ids = sorted({entry["alarm_id"] for entry in entries})
    acknowledgements = await pool.fetch(
        """
        SELECT device_id, alarm_id, acknowledged_by, at, delivered_at
        FROM alarm_acknowledgements WHERE patient_id = $1 AND alarm_id = ANY($2)
        ORDER BY id
        """,
        patient_id,
        alarm_ids,
    )
    escalations = await pool.fetch(
        """
        SELECT device_id, alarm_id, escalated_at, recipient_role, recipient_user_ids
        FROM alarm_escalations WHERE patient_id = $1 AND alarm_id = ANY($2)
        """,
        patient_id,
        alarm_ids,
    )
    by_alarm = {(entry["device_id"], entry["alarm_id"]): [] for entry in entries}
    for row in acknowledgements:
        responses = by_alarm.get((row["device_id"], row["alarm_id"]))
        if responses is not None:
            delivered = row["delivered_at"]
            delivered_at = None if delivered is None else delivered.isoformat()
            responses.append(
                {
                    "by": row["acknowledged_by"],
                    "at": row["at"].isoformat(),
                    "delivered_at": delivered_at,
                }
            )
    escalated = {(row["device_id"], row["alarm_id"]): row for row in escalations}
    for entry in entries:
        key = (entry["device_id"], entry["alarm_id"])
        entry["acknowledgements"] = by_alarm[key]
        row = escalated.get(key)
        if row is not None:
            entry["escalation"] = {
                "escalated_at": row["escalated_at"].isoformat(),
                "recipient_role": row["recipient_role"],
                "recipient_user_ids": list(row["recipient_user_ids"]),
            }


_LOADERS = {
    "vitals": _vitals,
    "observation": _observations,
    "alarm": _alarms,
    "device": _device_events,
    "gap": _gaps,
}
