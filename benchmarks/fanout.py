"""Fan-out latency: simulated beds to dashboard clients through one or two centrals.

Each bed streams ECG at 250 Hz in 0.25 s chunks and numerics at 1 Hz over the real
ingest WebSocket (``firmware_sim.load`` in its own process). Each dashboard client
watches ``--beds-per-client`` beds. Latency runs from the moment the simulated device
sends a message to the moment a client receives the event, on one clock. With
``--instances 2`` beds and clients alternate between two centrals that relay events
through a private redis-server, so about half the events cross instances.

The reference, measured in the same run before the load, is one bed to one client
on the same central(s): the latency of the path itself without load.

    .venv/bin/python benchmarks/fanout.py --quick                 # under a minute
    .venv/bin/python benchmarks/fanout.py --beds 1000 --clients 100 --duration 60
    .venv/bin/python benchmarks/fanout.py --beds 1000 --clients 100 --instances 2
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

# Run as a script, so the repository root must be importable for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.loadkit import (
    CentralProcess,
    Dashboard,
    Latencies,
    RedisServer,
    Ward,
    database,
    drop_database,
    fresh_database,
    machine_description,
    seed_ward,
)
from firmware_sim.load import percentiles_ms

TARGET_P99_MS = 250.0
REFERENCE_S = 5.0
# Seconds for the load generator to connect every bed before it streams; latency
# counts only events sent while streaming, so this only bounds the wait.
CONNECT_ALLOWANCE_S = 120.0


@dataclass
class FanoutResult:
    """Latencies and counts of one load level."""

    beds: int
    clients: int
    instances: int
    duration_s: float
    latencies: Latencies
    expected_updates: int
    central_cpu_percent: float
    counters: dict[str, int]
    generator_output: str


def _generator_command(
    url: str, ward: Ward, first: int, count: int, duration_s: float,
    alarm_every_s: float | None,
) -> list[str]:
    command = [
        sys.executable, "-m", "firmware_sim.load", "--url", url,
        "--beds", str(count), "--first-bed", str(first), "--device-prefix", "bench-",
        "--secret", ward.device_secret, "--duration", str(duration_s),
    ]
    if alarm_every_s is not None:
        command += ["--alarm-every", str(alarm_every_s)]
    return command


async def _start_generators(
    centrals: list[CentralProcess], ward: Ward, beds: int, duration_s: float,
    alarm_every_s: float | None,
) -> list[asyncio.subprocess.Process]:
    # Beds split in contiguous halves, one generator process per central.
    share = -(-beds // len(centrals))
    generators = []
    for index, central in enumerate(centrals):
        first = 1 + index * share
        count = min(share, beds - index * share)
        if count <= 0:
            continue
        command = _generator_command(
            central.ws_url("/ingest"), ward, first, count, duration_s, alarm_every_s
        )
        generators.append(
            await asyncio.create_subprocess_exec(
                *command, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        )
    return generators


async def _wait_for_generators(
    generators: list[asyncio.subprocess.Process], duration_s: float
) -> str:
    outputs = []
    for generator in generators:
        stdout, stderr = await asyncio.wait_for(
            generator.communicate(), duration_s + CONNECT_ALLOWANCE_S
        )
        outputs.append(stdout.decode().strip())
        if generator.returncode != 0:
            outputs.append(stderr.decode().strip()[-2000:])
    return " | ".join(outputs)


def _merged_counters(centrals: list[CentralProcess]) -> dict[str, int]:
    counters: dict[str, int] = {}
    for central in centrals:
        for name, value in central.counters().items():
            counters[name] = counters.get(name, 0) + value
    return counters


async def run_level(
    centrals: list[CentralProcess],
    ward: Ward,
    beds: int,
    clients: int,
    duration_s: float,
    alarm_every_s: float | None = None,
) -> FanoutResult:
    """Stream ``beds`` to ``clients`` of the ward for ``duration_s``; time delivery."""
    dashboards = [
        Dashboard(centrals[index % len(centrals)].ws_url("/events"), token, patients)
        for index, (token, patients) in enumerate(ward.clients[:clients])
    ]
    await asyncio.gather(*(dashboard.open() for dashboard in dashboards))
    for dashboard in dashboards:
        dashboard.recording = True

    cpu_before = [central.cpu_seconds() for central in centrals]
    started = time.perf_counter()
    generators = await _start_generators(centrals, ward, beds, duration_s, alarm_every_s)
    generator_output = await _wait_for_generators(generators, duration_s)
    elapsed = time.perf_counter() - started
    cpu_used = sum(c.cpu_seconds() for c in centrals) - sum(cpu_before)

    latencies = Latencies()
    for dashboard in dashboards:
        dashboard.recording = False
        latencies.extend(dashboard.latencies)
    await asyncio.gather(*(dashboard.close() for dashboard in dashboards))
    # Patient ids are P-B0001 and up, so the number says whether the bed streamed.
    watched_active = sum(
        sum(1 for patient in patients if int(patient[3:]) <= beds)
        for _, patients in ward.clients[:clients]
    )
    return FanoutResult(
        beds=beds,
        clients=clients,
        instances=len(centrals),
        duration_s=duration_s,
        latencies=latencies,
        # 4 waveform chunks and 1 numerics message per bed-second, per watcher.
        expected_updates=int(watched_active * 5 * duration_s),
        central_cpu_percent=100.0 * cpu_used / elapsed,
        counters=_merged_counters(centrals),
        generator_output=generator_output,
    )


def print_result(label: str, result: FanoutResult) -> None:
    p50, p99, worst = percentiles_ms(result.latencies.updates)
    received = len(result.latencies.updates)
    share = 100.0 * received / result.expected_updates if result.expected_updates else 0
    dropped = result.counters.get("events.waveform_dropped", 0)
    closed = result.counters.get("events.clients_closed_slow", 0)
    print(
        f"| {label:<24} | {result.beds:>5} | {result.clients:>7} | {p50:>8.1f} "
        f"| {p99:>8.1f} | {worst:>8.1f} | {received:>9} ({share:5.1f} %) "
        f"| {dropped:>7} | {closed:>6} | {result.central_cpu_percent:>6.0f} |"
    )


def print_header() -> None:
    print(
        "| run                      |  beds | clients |  p50 ms  |  p99 ms  |  max ms  "
        "| updates received      | dropped | closed | CPU %  |"
    )
    print("|" + "|".join("-" * width for width in (26, 7, 9, 10, 10, 10, 23, 9, 8, 8)) + "|")


async def measure(args: argparse.Namespace, server_url: str, workdir: Path) -> list[bool]:
    url = await fresh_database(server_url)
    jwt_secret = secrets.token_hex(32)
    levels = sorted(set(args.beds))
    max_beds = levels[-1]
    ward = await seed_ward(url, max_beds, args.clients, args.beds_per_client, jwt_secret)
    redis_server = None
    centrals: list[CentralProcess] = []
    verdicts = []
    try:
        redis_url = None
        if args.instances > 1:
            redis_server = RedisServer(workdir)
            redis_server.start()
            redis_url = redis_server.url
        prefix = f"bench-{secrets.token_hex(4)}:" if redis_url else None
        centrals = [
            CentralProcess(workdir, url, jwt_secret, redis_url=redis_url,
                           channel_prefix=prefix)
            for _ in range(args.instances)
        ]
        centrals[0].profile_path = args.profile
        for central in centrals:
            central.start()
        print_header()
        # The reference client watches bed 1 only.
        reference_ward = Ward(ward.device_secret, ward.device_ids, ward.patient_ids,
                              [(ward.clients[0][0], [ward.patient_ids[0]])])
        reference = await run_level(centrals, reference_ward, 1, 1, REFERENCE_S)
        print_result("reference: 1 bed, idle", reference)
        for beds in levels:
            result = await run_level(centrals, ward, beds, args.clients, args.duration)
            print_result(f"{args.instances} central(s)", result)
            _, p99, _ = percentiles_ms(result.latencies.updates)
            verdicts.append(p99 < TARGET_P99_MS)
            if result.generator_output:
                print(f"  load generator: {result.generator_output}")
            transactions = result.counters.get("ingest.transactions", 0)
            if transactions:
                grouped = result.counters.get("ingest.transaction_messages", 0)
                print(f"  central: {grouped / transactions:.1f} messages per "
                      "transaction (counted since central started)")
    finally:
        for central in centrals:
            central.stop()
        if redis_server is not None:
            redis_server.stop()
        await drop_database(server_url, url)
    return verdicts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--beds", type=int, nargs="+", default=[1000],
                        help="bed counts to measure, one run each (default: 1000)")
    parser.add_argument("--clients", type=int, default=100,
                        help="dashboard clients (default: 100)")
    parser.add_argument("--beds-per-client", type=int, default=16,
                        help="beds each client watches, as a central station (default: 16)")
    parser.add_argument("--duration", type=float, default=60.0,
                        help="seconds of streaming per run (default: 60)")
    parser.add_argument("--instances", type=int, choices=(1, 2), default=1,
                        help="central instances; 2 relays through a private redis-server")
    parser.add_argument("--database-url",
                        help="PostgreSQL server to create a scratch database on "
                        "(default: an embedded server)")
    parser.add_argument("--profile", type=Path,
                        help="run the first central under pyinstrument; write the report here")
    parser.add_argument("--quick", action="store_true",
                        help="50 and 100 beds, 20 clients, 10 s each")
    args = parser.parse_args()
    if args.quick:
        args.beds, args.clients, args.duration = [50, 100], 20, 10.0
    started = time.perf_counter()
    print(f"machine: {machine_description()}")
    print(f"each bed: ECG 250 Hz in 0.25 s chunks + numerics 1 Hz; each client watches "
          f"{args.beds_per_client} beds; {args.duration:g} s per run; latency from "
          "device send to client receive")
    with tempfile.TemporaryDirectory() as workdir, database(args.database_url) as server:
        verdicts = asyncio.run(measure(args, server, Path(workdir)))
    print(f"target: p99 < {TARGET_P99_MS:g} ms -> "
          + ", ".join(f"{beds} beds {'met' if ok else 'NOT met'}"
                      for beds, ok in zip(sorted(set(args.beds)), verdicts, strict=True)))
    print(f"total run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
