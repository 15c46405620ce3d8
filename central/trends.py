"""Automated trend watchers that add tasks to the ward list when ENABLE_AI_AGENTS is on.

They are fixed rules, not learned models. Every item they add is marked
``automated: true`` and gives the figures it was based on:

- ``news2_rising``: NEWS2 rose by ``NEWS2_RISE_MIN`` or more within the last hour.
  Only the parameters measured at both times are compared, so a parameter that is
  newly recorded cannot look like a deterioration.
- ``spo2_falling``: SpO2 over the last ``SPO2_WINDOW`` falls, with the mean of its
  last ``SPO2_EDGE`` at least ``SPO2_DROP_MIN`` points below the mean of its first.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from central.news2_inputs import News2Inputs, load_news2_inputs
from protocol.codes import VitalSign

WATCHER_SOURCE = "rule-based trend watcher"
# A rising NEWS2 signals deterioration. The trigger, a rise of 2 within an hour, is
# this project's choice and not a threshold from the RCP report.
NEWS2_RISE_MIN = 2
NEWS2_LOOKBACK = (timedelta(minutes=60), timedelta(minutes=30))
# Below three shared parameters a rise reflects what was measured more than the
# patient's condition.
MIN_SHARED_PARAMETERS = 3
SPO2_WINDOW = timedelta(minutes=30)
SPO2_EDGE = timedelta(minutes=5)
SPO2_DROP_MIN = 3.0  # percentage points
SPO2_MIN_SAMPLES = 10
SPO2_CODE = VitalSign.SPO2.value.mdc_reference_id


async def trend_items(
    pool: asyncpg.Pool,
    patient_ids: list[str],
    current: dict[str, News2Inputs],
    now: datetime,
) -> list[dict[str, Any]]:
    """Return the automated items for these patients, largest change first."""
    if not patient_ids:
        return []
    ranked: list[tuple[tuple[float, str], dict[str, Any]]] = []
    earlier = {
        lookback: await load_news2_inputs(pool, patient_ids, now - lookback)
        for lookback in NEWS2_LOOKBACK
    }
    for patient_id in patient_ids:
        item = _news2_rising(patient_id, current[patient_id], earlier)
        if item is not None:
            ranked.append(((-item["trend"]["rise"], patient_id), item))
    for row in await _spo2_trends(pool, patient_ids, now):
        item = _spo2_falling(row)
        if item is not None:
            ranked.append(((-item["trend"]["drop"], row["patient_id"]), item))
    ranked.sort(key=lambda pair: pair[0])
    return [item for _, item in ranked]


def _news2_rising(
    patient_id: str,
    current: News2Inputs,
    earlier: dict[timedelta, dict[str, News2Inputs]],
) -> dict[str, Any] | None:
    best: dict[str, Any] | None = None
    for lookback, inputs_then in earlier.items():
        then = inputs_then[patient_id]
        shared = set(current.values) & set(then.values)
        if len(shared) < MIN_SHARED_PARAMETERS:
            continue
        score_now = current.score(shared).total
        score_then = then.score(shared).total
        rise = score_now - score_then
        if rise >= NEWS2_RISE_MIN and (best is None or rise > best["rise"]):
            best = {
                "rise": rise,
                "from": score_then,
                "to": score_now,
                "within_s": int(lookback.total_seconds()),
                "parameters": sorted(shared),
            }
    if best is None:
        return None
    minutes = best["within_s"] // 60
    reason = (
        f"automated ({WATCHER_SOURCE}): NEWS2 over {', '.join(best['parameters'])} "
        f"rose from {best['from']} to {best['to']} (+{best['rise']}) within "
        f"{minutes} min, which meets the rule of a rise of {NEWS2_RISE_MIN} or more "
        "within an hour; assess the patient. Automated items follow the patients "
        "by NEWS2"
    )
    return _item(patient_id, "news2_rising", reason, best)


async def _spo2_trends(
    pool: asyncpg.Pool, patient_ids: list[str], now: datetime
) -> list[asyncpg.Record]:
    start = now - SPO2_WINDOW
    return await pool.fetch(
        """
        SELECT patient_id,
               avg(value) FILTER (WHERE measured_at < $3) AS first_mean,
               avg(value) FILTER (WHERE measured_at >= $4) AS last_mean,
               regr_slope(value, extract(epoch FROM measured_at)) AS slope_per_s,
               count(*) AS samples
        FROM vitals
        WHERE patient_id = ANY($1::text[]) AND code = $5
          AND measured_at >= $2 AND measured_at <= $6
        GROUP BY patient_id
        ORDER BY patient_id
        """,
        patient_ids,
        start,
        start + SPO2_EDGE,
        now - SPO2_EDGE,
        SPO2_CODE,
        now,
    )


def _spo2_falling(row: asyncpg.Record) -> dict[str, Any] | None:
    first, last, slope = row["first_mean"], row["last_mean"], row["slope_per_s"]
    if row["samples"] < SPO2_MIN_SAMPLES or None in (first, last, slope):
        return None
    drop = first - last
    if drop < SPO2_DROP_MIN or slope >= 0:
        return None
    per_10_min = slope * 600
    window_min = int(SPO2_WINDOW.total_seconds() // 60)
    edge_min = int(SPO2_EDGE.total_seconds() // 60)
    detail = {
        "drop": round(drop, 1),
        "first_mean": round(first, 1),
        "last_mean": round(last, 1),
        "slope_per_10_min": round(per_10_min, 2),
        "samples": row["samples"],
        "window_s": int(SPO2_WINDOW.total_seconds()),
    }
    reason = (
        f"automated ({WATCHER_SOURCE}): SpO2 is trending down, mean "
        f"{first:.1f} % in the first {edge_min} min of the last {window_min} min and "
        f"{last:.1f} % in the last {edge_min} min ({per_10_min:+.1f} % per 10 min "
        f"over {row['samples']} readings), a fall of {SPO2_DROP_MIN:g} points or more; "
        "check the patient and the probe. Automated items follow the patients by NEWS2"
    )
    return _item(row["patient_id"], "spo2_falling", reason, detail)


def _item(
    patient_id: str, watcher: str, reason: str, detail: dict[str, Any]
) -> dict[str, Any]:
    return {
        "kind": "trend",
        "patient_id": patient_id,
        "automated": True,
        "source": WATCHER_SOURCE,
        "watcher": watcher,
        "reason": reason,
        "trend": detail,
    }
