"""Buffer write rate and backlog drain rate after a simulated outage.

Fills the agent's SQLite buffer with the messages one bed produces in the outage (ECG
of record 100 in 0.25 s chunks plus one heart-rate message a second), exactly as the
agent writes them: one committed transaction per message at synchronous=FULL. Then it
starts central (embedded PostgreSQL, as in the demo) and lets the agent's uplink drain
the backlog, and prints both rates next to the real-time rate they must beat.

    .venv/bin/python benchmarks/buffer_drain.py              # a one-hour outage
    .venv/bin/python benchmarks/buffer_drain.py --minutes 5  # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import platform
import tempfile
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from demo.stack import DEVICE_ID, Stack
from edge_agent.buffer import MessageBuffer, Priority
from edge_agent.config import CentralSettings
from edge_agent.uplink import Uplink
from protocol.messages import EcgWaveform, Measurement, VitalsNumerics

with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="The inplace keyword")
    import wfdb

RECORD = Path(__file__).parents[1] / "firmware_sim" / "recordings" / "100"
CHUNK_S = 0.25
RATE_HZ = 360


def outage_messages(minutes: float) -> list:
    """Builders for the messages one bed produces in ``minutes``, in order."""
    counts = wfdb.rdrecord(str(RECORD), physical=False, channels=[0]).d_signal[:, 0]
    counts = (counts - 1024).astype(np.int16)
    chunk = int(CHUNK_S * RATE_HZ)
    total = int(minutes * 60 * RATE_HZ)
    start = datetime.now(timezone.utc) - timedelta(minutes=minutes)
    builders = []
    for index in range(0, total, chunk):
        offset = index % (len(counts) - chunk)
        samples = counts[offset:offset + chunk].tolist()
        at = start + timedelta(seconds=index / RATE_HZ)
        builders.append(lambda seq, s=samples, i=index, t=at: EcgWaveform(
            device_id=DEVICE_ID, seq=seq, sent_at=t, lead="MLII",
            sample_rate_hz=RATE_HZ, first_sample_at=t, first_sample_index=i,
            scale_uv=5.0, samples=s))
        if index % RATE_HZ == 0:
            builders.append(lambda seq, t=at: VitalsNumerics(
                device_id=DEVICE_ID, seq=seq, sent_at=t, measured_at=t,
                measurements=[Measurement(code="MDC_ECG_HEART_RATE", value=74.0,
                                          unit="/min")]))
    return builders


async def fill(buffer: MessageBuffer, builders: list) -> float:
    started = time.perf_counter()
    for build in builders:
        await buffer.append(build, Priority.WAVEFORM)
    return time.perf_counter() - started


async def drain(buffer: MessageBuffer, stack: Stack) -> float:
    settings = CentralSettings(url=f"ws://127.0.0.1:{stack.port}/ingest")
    uplink = Uplink(settings, buffer, DEVICE_ID, stack.device_secret)
    started = time.perf_counter()
    task = asyncio.create_task(uplink.run())
    while await buffer.pending_count():
        await asyncio.sleep(0.05)
    elapsed = time.perf_counter() - started
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return elapsed


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0,
                        help="length of the simulated outage (default: 60)")
    args = parser.parse_args()
    outage_s = args.minutes * 60
    builders = outage_messages(args.minutes)
    with tempfile.TemporaryDirectory() as workdir:
        buffer = MessageBuffer(Path(workdir) / "buffer.sqlite3")
        await buffer.open()
        write_s = await fill(buffer, builders)
        stack = Stack(workdir=Path(workdir))
        await asyncio.to_thread(stack.seed)
        await asyncio.to_thread(stack.start_central)
        try:
            drain_s = await drain(buffer, stack)
        finally:
            await buffer.close()
            await asyncio.to_thread(stack.stop_all)

    count = len(builders)
    real_rate = count / outage_s
    print(f"machine: {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}")
    print(f"outage: {args.minutes:g} min of one bed = {count} messages "
          f"({count / outage_s:.1f} per second in real time)")
    print(f"{'':26}{'messages/s':>12}{'x real time':>14}{'seconds':>10}")
    print(f"{'real time (one bed)':26}{real_rate:12.1f}{1.0:14.1f}{outage_s:10.0f}")
    print(f"{'buffer write (FULL sync)':26}{count / write_s:12.1f}"
          f"{outage_s / write_s:14.1f}{write_s:10.1f}")
    print(f"{'drain to central':26}{count / drain_s:12.1f}"
          f"{outage_s / drain_s:14.1f}{drain_s:10.1f}")
    print(f"target: drain >= 20x real time -> {'met' if outage_s / drain_s >= 20 else 'NOT met'}")


if __name__ == "__main__":
    asyncio.run(main())
