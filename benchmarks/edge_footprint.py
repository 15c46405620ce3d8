"""Edge footprint: the real agent's CPU and memory per bed while it streams.

Runs the whole chain as processes, as the demo does: the simulated board replays
MIT-BIH record 100 (360 Hz) on a pseudo-terminal in real time, the agent reads,
filters, analyses and buffers it and forwards to central. After a warm-up, the
agent's CPU time and resident memory are sampled from /proc once a second. One agent
serves one bed, so its figures are per bed.

Two references are measured in the same run. One is the resident memory of a bare
Python interpreter. The other is the DSP real-time factor, processing time over
signal time, of the agent's streaming analyzer on 5 minutes of the record in 1 s
chunks.

    .venv/bin/python benchmarks/edge_footprint.py --quick   # about 40 s
    .venv/bin/python benchmarks/edge_footprint.py           # 2 minutes measured
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# Run as a script, so the repository root must be importable for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import record100
from benchmarks.loadkit import database, drop_database, fresh_database, machine_description
from demo.stack import Stack

RSS_TARGET_MB = 80.0
WARM_UP_S = 10.0
DSP_MINUTES = 5.0


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def private_mb(pid: int) -> float:
    """Return memory only this process uses (private pages), in MB."""
    total_kb = 0
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
        if line.startswith(("Private_Clean:", "Private_Dirty:")):
            total_kb += int(line.split()[1])
    return total_kb / 1024


def scipy_signal_import_rss_mb() -> float:
    """Return the RSS of an interpreter that has only imported scipy.signal."""
    output = subprocess.run(
        [sys.executable, "-c",
         "import scipy.signal\n"
         "print([l.split()[1] for l in open('/proc/self/status') "
         "if l.startswith('VmRSS:')][0])"],
        capture_output=True, text=True, check=True,
    ).stdout
    return int(output.strip()) / 1024


def bare_interpreter_rss_mb() -> float:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        time.sleep(1.0)
        return rss_mb(process.pid)
    finally:
        process.kill()
        process.wait()


def dsp_real_time_factor() -> float:
    record = record100.load_record(DSP_MINUTES)
    started = time.perf_counter()
    record100.detect_with_pipeline(record.samples_mv, record.sample_rate_hz)
    return (time.perf_counter() - started) / record.duration_s


def measure_agent(
    stack: Stack, duration_s: float
) -> tuple[float, float, float, float]:
    """Return CPU % of one core, mean and max RSS and max private memory (MB)."""
    pid = stack.processes["agent"].pid
    time.sleep(WARM_UP_S)
    cpu_before, started = cpu_seconds(pid), time.monotonic()
    samples = []
    private = []
    while time.monotonic() - started < duration_s:
        if stack.processes["agent"].poll() is not None:
            raise RuntimeError(f"the agent exited; see {stack.workdir / 'logs'}")
        samples.append(rss_mb(pid))
        private.append(private_mb(pid))
        time.sleep(1.0)
    cpu_percent = 100.0 * (cpu_seconds(pid) - cpu_before) / (time.monotonic() - started)
    return cpu_percent, sum(samples) / len(samples), max(samples), max(private)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=120.0,
                        help="seconds measured after a 10 s warm-up (default: 120)")
    parser.add_argument("--database-url",
                        help="PostgreSQL server to create a scratch database on "
                        "(default: an embedded server)")
    parser.add_argument("--quick", action="store_true", help="measure 20 s")
    args = parser.parse_args()
    if args.quick:
        args.duration = 20.0
    started = time.perf_counter()
    print(f"machine: {machine_description()}")
    with tempfile.TemporaryDirectory() as workdir, database(args.database_url) as server:
        url = asyncio.run(fresh_database(server))
        stack = Stack(workdir=Path(workdir), database_url=url, log_level="WARNING")
        try:
            stack.seed()
            stack.start_central()
            stack.start_board()
            stack.start_agent()
            cpu_percent, mean_rss, max_rss, max_private = measure_agent(
                stack, args.duration
            )
        finally:
            stack.stop_all()
            asyncio.run(drop_database(server, url))
    bare_rss = bare_interpreter_rss_mb()
    scipy_rss = scipy_signal_import_rss_mb()
    factor = dsp_real_time_factor()
    print(f"agent on record 100 (360 Hz, real time), {args.duration:g} s after "
          f"{WARM_UP_S:g} s warm-up:")
    print(f"  CPU per bed:  {cpu_percent:.1f} % of one core")
    print(f"  RSS per bed:  mean {mean_rss:.1f} MB, max {max_rss:.1f} MB")
    print(f"  private memory (not shared with other processes): max {max_private:.1f} MB")
    print(f"  reference, bare Python interpreter RSS: {bare_rss:.1f} MB; "
          f"after only `import scipy.signal`: {scipy_rss:.1f} MB")
    print(f"DSP real-time factor (processing / signal time, {DSP_MINUTES:g} min of "
          f"record 100 in 1 s chunks): {factor:.5f} ({1 / factor:.0f}x faster than "
          "real time)")
    print(f"target: agent RSS <= {RSS_TARGET_MB:g} MB -> "
          f"{'met' if max_rss <= RSS_TARGET_MB else 'NOT met'}")
    print(f"total run time: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
