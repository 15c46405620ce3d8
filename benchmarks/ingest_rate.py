"""Ingest rate: many simulated devices through /ingest into PostgreSQL, against COPY.

Simulated beds (``firmware_sim.load`` in flood mode) send ECG chunks of 0.25 s at
250 Hz and a numerics message every fourth chunk, each as fast as a window of 512
unacknowledged messages allows, as agents drain a backlog. Central stores them
through its real WebSocket ingest. The reference, in the same run and database,
is a bare asyncpg COPY of exactly the rows ingest stored (device_messages,
waveform_chunks and vitals) into the same tables under other device ids. Both rates
count device messages, each with its child rows.

    .venv/bin/python benchmarks/ingest_rate.py --quick       # about 30 s
    .venv/bin/python benchmarks/ingest_rate.py               # 100 beds, 30 s
    .venv/bin/python benchmarks/ingest_rate.py --profile ingest-profile.txt
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import secrets
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, so the repository root must be importable for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg

from benchmarks.loadkit import (
    DEVICE_PREFIX,
    CentralProcess,
    database,
    drop_database,
    fresh_database,
    machine_description,
    seed_ward,
)
from central.devices import register_device
from firmware_sim.load import LoadSettings, run_load

TARGET_FRACTION = 0.5
COPY_PREFIX = "copy-"
TABLES = ("device_messages", "waveform_chunks", "vitals")


async def copy_reference(url: str, device_ids: list[str], secret: str) -> tuple[int, float]:
    """COPY the rows ingest stored again under new device ids; return (messages, s)."""
    connection = await asyncpg.connect(url)
    try:
        for device_id in device_ids:
            await register_device(connection, COPY_PREFIX + device_id, None, secret)
        rows: dict[str, list[tuple[object, ...]]] = {}
        columns: dict[str, list[str]] = {}
        for table in TABLES:
            records = await connection.fetch(
                f"SELECT * FROM {table} WHERE device_id LIKE $1", DEVICE_PREFIX + "%"
            )
            columns[table] = list(records[0].keys()) if records else []
            rows[table] = [
                (COPY_PREFIX + record["device_id"], *tuple(record.values())[1:])
                for record in records
            ]
        started = time.perf_counter()
        async with connection.transaction():
            for table in TABLES:
                if rows[table]:
                    await connection.copy_records_to_table(
                        table, records=rows[table], columns=columns[table]
                    )
        elapsed = time.perf_counter() - started
    finally:
        await connection.close()
    return len(rows["device_messages"]), elapsed


async def measure(args: argparse.Namespace, server_url: str, workdir: Path) -> bool:
    url = await fresh_database(server_url)
    jwt_secret = secrets.token_hex(32)
    try:
        ward = await seed_ward(url, args.beds, 0, 0, jwt_secret)
        central = CentralProcess(workdir, url, jwt_secret, profile_path=args.profile)
        central.start()
        try:
            cpu_before = central.cpu_seconds()
            report = await run_load(
                LoadSettings(
                    url=central.ws_url("/ingest"),
                    device_ids=ward.device_ids,
                    secret=ward.device_secret,
                    duration_s=args.duration,
                    flood=True,
                )
            )
            central_cpu = central.cpu_seconds() - cpu_before
        finally:
            central.stop()
        messages, copy_s = await copy_reference(url, ward.device_ids, ward.device_secret)
    finally:
        await drop_database(server_url, url)
    ingest_rate = report.acknowledged_per_s
    copy_rate = messages / copy_s
    fraction = ingest_rate / copy_rate
    print(f"{'':34}{'messages/s':>12}{'messages':>10}{'seconds':>9}")
    print(f"{'COPY of the same rows (reference)':34}{copy_rate:12.0f}{messages:10d}"
          f"{copy_s:9.2f}")
    print(f"{'WebSocket ingest':34}{ingest_rate:12.0f}{report.acknowledged:10d}"
          f"{report.duration_s:9.2f}")
    print(f"ingest / COPY: {100 * fraction:.1f} %; central used "
          f"{100 * central_cpu / report.duration_s:.0f} % of one core")
    print(f"load generator: {report.summary()}")
    if report.failures:
        print(f"failures: {report.failures[:5]}")
    if args.profile:
        print(f"profile of central written to {args.profile}")
    ok = fraction >= TARGET_FRACTION
    print(f"target: ingest >= {100 * TARGET_FRACTION:.0f} % of COPY -> "
          f"{'met' if ok else 'NOT met'}")
    return ok


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beds", type=int, default=100,
                        help="simulated devices sending at once (default: 100)")
    parser.add_argument("--duration", type=float, default=30.0,
                        help="seconds of sending (default: 30)")
    parser.add_argument("--database-url",
                        help="PostgreSQL server to create a scratch database on "
                        "(default: an embedded server)")
    parser.add_argument("--profile", type=Path,
                        help="run central under pyinstrument and write its text report here")
    parser.add_argument("--quick", action="store_true", help="20 beds for 10 s")
    args = parser.parse_args()
    if args.quick:
        args.beds, args.duration = 20, 10.0
    logging.basicConfig(level=logging.WARNING)
    started = time.perf_counter()
    print(f"machine: {machine_description()}")
    print(f"{args.beds} simulated beds, flood mode, {args.duration:g} s")
    with tempfile.TemporaryDirectory() as workdir, database(args.database_url) as server:
        asyncio.run(measure(args, server, Path(workdir)))
    print(f"total run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
