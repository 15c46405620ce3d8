"""Alarm latency: from the sample that meets an alarm's definition to a dashboard.

Two measured parts, added per alarm kind:

- bedside: the streaming analyzer on synthetic episodes whose definition sample is
  known exactly (``benchmarks/synthetic_eval.py``, 0.25 s chunks). The delay runs to
  the end of the chunk whose result raised the alarm.
- transport: simulated beds (``firmware_sim.load``) stream ECG and numerics and each
  raises a high-priority alarm every ``--alarm-every`` seconds, stamped with the
  moment it is sent; dashboard clients time its arrival as ``patient.emergency``.
  Central stores the alarm and commits before it relays it.

The sum of the bedside delay and the transport p99 bounds the p99 from definition to
dashboard, because the bedside delays of one kind barely vary. Not included: the
agent's write of the alarm to its SQLite buffer before sending, about 1 ms at
synchronous=FULL (``benchmarks/buffer_drain.py`` writes about 1,000 messages/s).
The reference, measured in the same run, is the transport of an alarm from one
idle bed to one client.

    .venv/bin/python benchmarks/alarm_latency.py --quick    # under a minute
    .venv/bin/python benchmarks/alarm_latency.py            # 200 beds, 60 s
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, so the repository root must be importable for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import synthetic_eval
from benchmarks.fanout import run_level
from benchmarks.loadkit import (
    CentralProcess,
    Ward,
    database,
    drop_database,
    fresh_database,
    machine_description,
    seed_ward,
)
from firmware_sim.load import percentiles_ms

BEDSIDE_TARGET_S = 1.0
DELIVERY_TARGET_P99_MS = 250.0
REFERENCE_S = 10.0


def bedside_delays() -> dict[str, float]:
    """Return the worst report delay in seconds per alarm kind over the episodes."""
    results = synthetic_eval.run_alarm_scenarios()
    implemented = synthetic_eval.raised_kinds(results)
    delays: dict[str, float] = {}
    for scenario, (ecg, result) in results.items():
        outcomes, _ = synthetic_eval.evaluate_alarms(scenario, ecg, result, implemented)
        for outcome in outcomes:
            if outcome.report_delay_s is None:
                continue
            kind = str(outcome.kind)
            delays[kind] = max(delays.get(kind, outcome.report_delay_s),
                               outcome.report_delay_s)
    return delays


async def transport(args: argparse.Namespace, server_url: str, workdir: Path
                    ) -> tuple[list[float], list[float], str]:
    url = await fresh_database(server_url)
    jwt_secret = secrets.token_hex(32)
    central = CentralProcess(workdir, url, jwt_secret)
    try:
        ward = await seed_ward(url, args.beds, args.clients, args.beds_per_client,
                               jwt_secret)
        central.start()
        reference_ward = Ward(ward.device_secret, ward.device_ids, ward.patient_ids,
                              [(ward.clients[0][0], [ward.patient_ids[0]])])
        reference = await run_level([central], reference_ward, 1, 1, REFERENCE_S,
                                    alarm_every_s=0.5)
        loaded = await run_level([central], ward, args.beds, args.clients,
                                 args.duration, alarm_every_s=args.alarm_every)
    finally:
        central.stop()
        await drop_database(server_url, url)
    return reference.latencies.alarm, loaded.latencies.alarm, loaded.generator_output


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beds", type=int, default=200,
                        help="simulated beds streaming while alarms are timed (default: 200)")
    parser.add_argument("--clients", type=int, default=20, help="dashboard clients (default: 20)")
    parser.add_argument("--beds-per-client", type=int, default=16,
                        help="beds each client watches (default: 16)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds of streaming (default: 60)")
    parser.add_argument("--alarm-every", type=float, default=5.0,
                        help="seconds between alarms of one bed (default: 5)")
    parser.add_argument("--database-url",
                        help="PostgreSQL server to create a scratch database on "
                        "(default: an embedded server)")
    parser.add_argument("--quick", action="store_true", help="50 beds, 10 clients, 15 s")
    args = parser.parse_args()
    if args.quick:
        args.beds, args.clients, args.duration = 50, 10, 15.0
    started = time.perf_counter()
    print(f"machine: {machine_description()}")
    delays = bedside_delays()
    with tempfile.TemporaryDirectory() as workdir, database(args.database_url) as server:
        reference, loaded, generator = asyncio.run(transport(args, server, Path(workdir)))
    ref50, ref99, refmax = percentiles_ms(reference)
    p50, p99, worst = percentiles_ms(loaded)
    print(f"\ntransport, device send to dashboard receive ({len(loaded)} alarms, "
          f"{args.beds} beds streaming, {args.clients} clients):")
    print(f"  reference, one idle bed: p50 {ref50:.1f} ms, p99 {ref99:.1f} ms, "
          f"max {refmax:.1f} ms ({len(reference)} alarms)")
    print(f"  under load:              p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {worst:.1f} ms")
    print(f"  load generator: {generator}")
    print("\n| alarm kind               | bedside s | transport p99 s | definition to dashboard s |")
    print("|--------------------------|-----------|-----------------|---------------------------|")
    for kind, delay in sorted(delays.items()):
        print(f"| {kind:<24} | {delay:>9.2f} | {p99 / 1000:>15.3f} | "
              f"{delay + p99 / 1000:>25.2f} |")
    bedside_ok = all(delay <= BEDSIDE_TARGET_S for delay in delays.values())
    print(f"\ntarget: bedside within {BEDSIDE_TARGET_S:g} s of the definition -> "
          f"{'met' if bedside_ok else 'NOT met'}")
    print(f"target: delivery p99 <= {DELIVERY_TARGET_P99_MS:g} ms -> "
          f"{'met' if p99 <= DELIVERY_TARGET_P99_MS else 'NOT met'}")
    print(f"total run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
