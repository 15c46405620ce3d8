"""Ward task items beyond alarms and NEWS2: observations due, alarms that no one
acknowledged, and devices that need attention. Each item carries its ``reason``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from central.news2 import PARAMETERS, RISK_ORDER, News2Score, RiskBand
from central.news2_inputs import MANUAL_PARAMETERS, MAX_OBSERVATION_AGE, News2Inputs

# RCP NEWS2 (2017), chart 4, minimum frequency of monitoring: 12-hourly at a score
# of 0, 4 to 6-hourly at 1-4 (the shorter bound is used), hourly at 3 in one
# parameter or 5-6. At 7 or more the chart requires continuous monitoring.
# NOTE: "continuous" is taken as hourly for the parts only a person can assess
# (air or oxygen, consciousness); the bedside devices cover the others.
INTERVAL_SCORE_0 = timedelta(hours=12)
INTERVAL_SCORE_1_TO_4 = timedelta(hours=4)
INTERVAL_URGENT = timedelta(hours=1)
# Devices send numerics every second while they stream, so a minute without any
# message means the device is off, unplugged or out of reach.
DEVICE_SILENT_AFTER = timedelta(seconds=60)
# Cleared alarms that no one acknowledged are listed for review this long.
UNACKNOWLEDGED_REVIEW_WINDOW = timedelta(hours=12)
PRIORITY_ORDER = {"high": 0, "medium": 1, "low": 2}


def observation_interval(score: News2Score) -> timedelta:
    """Return the longest time NEWS2 allows between two full observation sets."""
    if score.risk in (RiskBand.HIGH, RiskBand.MEDIUM, RiskBand.LOW_MEDIUM):
        return INTERVAL_URGENT
    if score.total >= 1:
        return INTERVAL_SCORE_1_TO_4
    return INTERVAL_SCORE_0


def observations_due_items(
    inputs: dict[str, News2Inputs], scores: dict[str, News2Score], now: datetime
) -> list[dict[str, Any]]:
    """Return an item for each patient whose last full observation set is too old.

    A full set has a value of every NEWS2 parameter. Its time is that of the oldest
    of those values, since the set was complete only once the last part arrived.
    """
    ranked = []
    for patient_id, patient_inputs in inputs.items():
        score = scores[patient_id]
        interval = observation_interval(score)
        stale = [
            name
            for name in PARAMETERS
            if name not in patient_inputs.measured_at
            or now - patient_inputs.measured_at[name] > interval
        ]
        if not stale:
            continue
        times = patient_inputs.measured_at
        complete_at = min(times.values()) if len(times) == len(PARAMETERS) else None
        last_full_set_at = None if complete_at is None else complete_at.isoformat()
        item = {
            "kind": "observations_due",
            "patient_id": patient_id,
            "reason": _due_reason(score, interval, stale, complete_at, now),
            "observations_due": {
                "interval_s": int(interval.total_seconds()),
                "last_full_set_at": last_full_set_at,
                "stale_parameters": stale,
                "news2_total": score.total,
            },
        }
        overdue_s = (
            (now - complete_at - interval).total_seconds()
            if complete_at is not None
            else float("inf")
        )
        ranked.append(((-RISK_ORDER[score.risk], -overdue_s, patient_id), item))
    ranked.sort(key=lambda pair: pair[0])
    return [item for _, item in ranked]


# NEWS2 parameter -> the field of POST /patients/{id}/observations that records it,
# so the task names what the nurse must send.
_OBSERVATION_FIELD = {
    parameter: field for field, parameter in MANUAL_PARAMETERS.items()
}

def _due_reason(
    score: News2Score,
    interval: timedelta,
    stale: list[str],
    complete_at: datetime | None,
    now: datetime,
) -> str:
    hours = interval.total_seconds() / 3600
    every = f"{hours:g} h"
    if complete_at is None:
        since = f"no full observation set in the last {_hours(MAX_OBSERVATION_AGE)}"
    else:
        since = f"last full observation set {format_duration(now - complete_at)} ago"
    return (
        f"observations due: {since}, and NEWS2 {score.total} ({score.risk.value} "
        f"risk) calls for one at least every {every}; record "
        f"{', '.join(_OBSERVATION_FIELD.get(name, name) for name in stale)} with "
        "POST /patients/{id}/observations; listed after the patients by NEWS2"
    )


def unacknowledged_items(
    rows: list[asyncpg.Record], now: datetime
) -> list[dict[str, Any]]:
    """Return an item for each cleared high or medium alarm no one acknowledged."""
    def order(row: asyncpg.Record) -> tuple[int, float]:
        return (PRIORITY_ORDER[row["priority"]], -row["started_at"].timestamp())

    ordered = sorted(rows, key=order)
    return [
        {
            "kind": "unacknowledged_alarm",
            "patient_id": row["patient_id"],
            "reason": (
                f"{row['priority']}-priority {row['kind']} alarm raised "
                f"{format_duration(now - row['started_at'])} ago cleared before anyone "
                "acknowledged it; review it. Listed after observations due"
            ),
            "alarm": {
                "device_id": row["device_id"],
                "alarm_id": row["alarm_id"],
                "kind": row["kind"],
                "priority": row["priority"],
                "category": row["category"],
                "started_at": row["started_at"].isoformat(),
            },
        }
        for row in ordered
    ]


async def load_unacknowledged_cleared(
    pool: asyncpg.Pool, patient_ids: list[str], now: datetime
) -> list[asyncpg.Record]:
    return await pool.fetch(
        """
        SELECT * FROM (
            SELECT DISTINCT ON (device_id, alarm_id)
                   device_id, alarm_id, patient_id, kind, priority, category, state,
                   started_at
            FROM alarms
            WHERE patient_id = ANY($1::text[]) AND started_at >= $2
              AND priority IN ('high', 'medium')
            ORDER BY device_id, alarm_id, seq DESC
        ) newest
        WHERE state = 'cleared' AND NOT EXISTS (
            SELECT 1 FROM alarm_acknowledgements k
            WHERE k.device_id = newest.device_id AND k.alarm_id = newest.alarm_id
        )
        """,
        patient_ids,
        now - UNACKNOWLEDGED_REVIEW_WINDOW,
    )


async def load_bed_devices(
    pool: asyncpg.Pool, patient_ids: list[str]
) -> list[asyncpg.Record]:
    """Return the registered devices in the beds of these patients."""
    return await pool.fetch(
        """
        SELECT d.id, d.model, d.last_seen_at, p.id AS patient_id
        FROM devices d JOIN patients p ON p.bed_id = d.bed_id
        WHERE p.id = ANY($1::text[]) AND d.retired_at IS NULL
        ORDER BY d.id
        """,
        patient_ids,
    )


def device_items(
    devices: list[asyncpg.Record],
    active_alarms: list[asyncpg.Record],
    now: datetime,
) -> list[dict[str, Any]]:
    """Return an item for each device that is silent or has a technical alarm."""
    technical: dict[str, list[str]] = {}
    for alarm in active_alarms:
        if alarm["category"] == "technical":
            technical.setdefault(alarm["device_id"], []).append(alarm["kind"])
    ranked = []
    for device in devices:
        problems = []
        last_seen = device["last_seen_at"]
        silent = last_seen is None or now - last_seen > DEVICE_SILENT_AFTER
        if last_seen is None:
            problems.append("has never connected")
        elif silent:
            problems.append(f"not heard from for {format_duration(now - last_seen)}")
        kinds = sorted(technical.get(device["id"], []))
        # NOTE: central receives no battery level; a low battery shows here only
        # when the device raises a technical alarm for it.
        battery = [kind for kind in kinds if "battery" in kind]
        if kinds:
            problems.append(f"technical alarm active: {', '.join(kinds)}")
        if not problems:
            continue
        item = {
            "kind": "device",
            "patient_id": device["patient_id"],
            "reason": (
                f"device {device['id']} {'; '.join(problems)}; devices come last "
                "because their active technical alarms are already listed above"
            ),
            "device": {
                "device_id": device["id"],
                "model": device["model"],
                "last_seen_at": None if last_seen is None else last_seen.isoformat(),
                "silent": silent,
                "battery_low": bool(battery),
                "technical_alarms": kinds,
            },
        }
        ranked.append(((not silent, device["id"]), item))
    ranked.sort(key=lambda pair: pair[0])
    return [item for _, item in ranked]


def _hours(span: timedelta) -> str:
    return f"{span.total_seconds() / 3600:g} h"


def format_duration(elapsed: timedelta) -> str:
    """Return a short human reading of ``elapsed``: seconds, minutes or hours."""
    seconds = max(0, int(elapsed.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"
