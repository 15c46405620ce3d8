"""Many simulated bedside devices on central's ingest WebSocket (``aura-load``).

Each simulated bed speaks the device protocol as an agent does, without running one:
it opens /ingest with HTTP Basic, sends ``device.hello``, then streams ECG in chunks of
``chunk_s`` (at 250 Hz and 0.25 s: 62 or 63 samples, so the sample index advances by
exactly the sampling rate each second) and numerics every ``numerics_interval_s``,
and counts the acks. ``flood`` mode instead sends as fast as a window of
unacknowledged messages allows, as an agent drains its backlog after an outage.

Timestamps are the wall clock at the moment of sending, so a receiver on the same
machine can measure transport latency: a numerics update is sent at ``measured_at``,
a waveform chunk at ``first_sample_at`` plus its duration, and an injected alarm at
its ``started_at``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import logging
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from protocol.messages import (
    Ack,
    DeviceHello,
    EcgWaveform,
    Emergency,
    Measurement,
    Rejected,
    VitalsNumerics,
    decode_central_message,
    encode,
)

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 250.0
CHUNK_S = 0.25
NUMERICS_INTERVAL_S = 1.0
# Devices opening their connections at once would all need authentication in the same
# instant. Opening this many at a time keeps the ramp-up short without a stampede.
CONNECT_CONCURRENCY = 32
CONNECT_TIMEOUT_S = 30.0
# Unacknowledged messages per bed in flood mode; the agent's default window is 512.
FLOOD_WINDOW = 512
SCALE_UV = 5.0


def ecg_template(sample_rate_hz: float) -> list[int]:
    """Return one second of a plausible ECG cycle at 60 bpm, in counts of SCALE_UV."""
    samples = []
    for index in range(round(sample_rate_hz)):
        t = index / sample_rate_hz
        # Gaussian P, QRS and T waves; amplitudes in microvolts.
        value = (
            150 * math.exp(-(((t - 0.20) / 0.025) ** 2))
            + 1200 * math.exp(-(((t - 0.35) / 0.010) ** 2))
            - 200 * math.exp(-(((t - 0.37) / 0.010) ** 2))
            + 300 * math.exp(-(((t - 0.60) / 0.040) ** 2))
        )
        samples.append(round(value / SCALE_UV))
    return samples


@dataclass
class BedStats:
    """Counts and latencies of one simulated bed."""

    connected: bool = False
    sent: int = 0
    acknowledged: int = 0
    rejected: int = 0
    failure: str | None = None
    # Loop time of the last ack, so rates count acks that arrive after sending stops.
    last_ack_at: float = 0.0
    ack_latencies_s: list[float] = field(default_factory=list)
    # How late each real-time chunk went out against its schedule: when this grows,
    # the generator itself lacks CPU and its latencies mean little.
    send_lags_s: list[float] = field(default_factory=list)


@dataclass
class LoadReport:
    """Totals of one run over all simulated beds."""

    beds: int
    connected: int
    duration_s: float
    sent: int
    acknowledged: int
    rejected: int
    failures: list[str]
    ack_latencies_s: list[float]
    send_lags_s: list[float]

    @property
    def acknowledged_per_s(self) -> float:
        return self.acknowledged / self.duration_s if self.duration_s else 0.0

    def summary(self) -> str:
        """Return a one-line summary with ack latency percentiles in ms."""
        p50, p99, worst = percentiles_ms(self.ack_latencies_s)
        summary = (
            f"beds {self.connected}/{self.beds} connected, {self.duration_s:.1f} s: "
            f"sent {self.sent}, acknowledged {self.acknowledged} "
            f"({self.acknowledged_per_s:.0f}/s), rejected {self.rejected}; "
            f"ack latency ms p50 {p50:.1f} p99 {p99:.1f} max {worst:.1f}"
        )
        if self.send_lags_s:
            _, lag99, lag_max = percentiles_ms(self.send_lags_s)
            summary += f"; send lag ms p99 {lag99:.1f} max {lag_max:.1f}"
        return summary


def percentiles_ms(values: Sequence[float]) -> tuple[float, float, float]:
    """Return (p50, p99, max) of ``values`` in milliseconds; NaN when empty."""
    if not values:
        return math.nan, math.nan, math.nan
    ordered = sorted(values)

    def rank(fraction: float) -> float:
        return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] * 1000

    return rank(0.50), rank(0.99), ordered[-1] * 1000


class SimulatedBed:
    """One device connection streaming ECG and numerics."""

    def __init__(
        self,
        url: str,
        device_id: str,
        secret: str,
        *,
        sample_rate_hz: float = SAMPLE_RATE_HZ,
        chunk_s: float = CHUNK_S,
        numerics_interval_s: float = NUMERICS_INTERVAL_S,
        alarm_interval_s: float | None = None,
    ) -> None:
        self.url = url
        self.device_id = device_id
        self.stats = BedStats()
        self._authorization = "Basic " + base64.b64encode(
            f"{device_id}:{secret}".encode()
        ).decode("ascii")
        self._rate = sample_rate_hz
        self._chunk_s = chunk_s
        self._numerics_every = max(1, round(numerics_interval_s / chunk_s))
        self._alarm_every = (
            None if alarm_interval_s is None else max(1, round(alarm_interval_s / chunk_s))
        )
        self._template = ecg_template(sample_rate_hz)
        # Microseconds since the epoch: unique across runs with the same device ids.
        self._seq = time.time_ns() // 1000
        self._sample_index = 0
        self._chunks = 0
        self._alarms = 0
        self._sent_at: dict[int, float] = {}
        self._window = asyncio.Semaphore(FLOOD_WINDOW)
        self._flooding = False
        self._websocket: ClientConnection | None = None
        self._receiver: asyncio.Task[None] | None = None

    async def open(self) -> None:
        """Connect, send ``device.hello`` and start counting acks."""
        self._websocket = await connect(
            self.url,
            additional_headers={"Authorization": self._authorization},
            open_timeout=CONNECT_TIMEOUT_S,
            ping_interval=None,
            max_size=1 << 20,
        )
        self._receiver = asyncio.create_task(self._receive())
        now = datetime.now(UTC)
        await self._send(
            DeviceHello(
                device_id=self.device_id,
                seq=self._next_seq(),
                sent_at=now,
                model="aura-load simulated bed",
                firmware="load-1",
            )
        )
        self.stats.connected = True

    async def close(self) -> None:
        if self._websocket is not None:
            await self._websocket.close()
        if self._receiver is not None:
            self._receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await self._receiver

    async def stream(self, duration_s: float, start_at: float) -> None:
        """Send one chunk every ``chunk_s`` of the loop clock from ``start_at``."""
        loop = asyncio.get_running_loop()
        ticks = int(duration_s / self._chunk_s)
        for tick in range(ticks):
            delay = start_at + tick * self._chunk_s - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            self.stats.send_lags_s.append(loop.time() - start_at - tick * self._chunk_s)
            await self.send_tick()

    async def flood(self, duration_s: float) -> None:
        """Send chunks back to back for ``duration_s``, at most FLOOD_WINDOW unacked."""
        loop = asyncio.get_running_loop()
        end = loop.time() + duration_s
        self._flooding = True
        while loop.time() < end:
            await self._window.acquire()
            await self.send_tick(flood=True)

    async def send_tick(self, *, flood: bool = False) -> None:
        """Send the messages of one chunk interval: ECG, and numerics when due."""
        self._chunks += 1
        await self._send(self._waveform())
        if self._chunks % self._numerics_every == 0:
            if flood:
                await self._window.acquire()
            await self._send(self._numerics())
        if self._alarm_every is not None and self._chunks % self._alarm_every == 0:
            if flood:
                await self._window.acquire()
            await self._send(self._emergency())

    def _next_seq(self) -> int:
        self._seq += 1
        return self._seq

    def _waveform(self) -> EcgWaveform:
        start = round(self._sample_index)
        self._sample_index += self._rate * self._chunk_s
        count = round(self._sample_index) - start
        template = self._template
        samples = [template[(start + i) % len(template)] for i in range(count)]
        now = datetime.now(UTC)
        return EcgWaveform(
            device_id=self.device_id,
            seq=self._next_seq(),
            sent_at=now,
            lead="II",
            sample_rate_hz=self._rate,
            first_sample_at=now - timedelta(seconds=count / self._rate),
            first_sample_index=start,
            scale_uv=SCALE_UV,
            samples=samples,
        )

    def _numerics(self) -> VitalsNumerics:
        now = datetime.now(UTC)
        return VitalsNumerics(
            device_id=self.device_id,
            seq=self._next_seq(),
            sent_at=now,
            measured_at=now,
            measurements=[
                Measurement(
                    code="MDC_ECG_HEART_RATE", value=60.0 + random.random(), unit="/min"
                ),
                Measurement(code="MDC_PULS_OXIM_SAT_O2", value=97.0, unit="%"),
            ],
        )

    def _emergency(self) -> Emergency:
        self._alarms += 1
        now = datetime.now(UTC)
        return Emergency(
            device_id=self.device_id,
            seq=self._next_seq(),
            sent_at=now,
            alarm_id=f"load-{self._alarms}",
            kind="asystole",
            priority="high",
            state="raised",
            started_at=now,
            evidence="simulated alarm from aura-load",
        )

    async def _send(self, message: EcgWaveform | VitalsNumerics | Emergency | DeviceHello) -> None:
        assert self._websocket is not None
        self._sent_at[message.seq] = time.perf_counter()
        await self._websocket.send(encode(message).decode())
        self.stats.sent += 1

    async def _receive(self) -> None:
        assert self._websocket is not None
        async for frame in self._websocket:
            reply = decode_central_message(frame)
            now = time.perf_counter()
            if isinstance(reply, Ack):
                for seq in reply.seqs:
                    sent = self._sent_at.pop(seq, None)
                    if sent is not None:
                        self.stats.ack_latencies_s.append(now - sent)
                        if self._flooding:
                            self._window.release()
                self.stats.acknowledged += len(reply.seqs)
                self.stats.last_ack_at = asyncio.get_running_loop().time()
            elif isinstance(reply, Rejected):
                self.stats.rejected += 1
                logger.warning(
                    "central rejected seq %s of %s: %s: %s",
                    reply.seq, self.device_id, reply.field, reply.problem,
                )


@dataclass(frozen=True)
class LoadSettings:
    """One load run: where, which devices, and what each sends."""

    url: str
    device_ids: Sequence[str]
    secret: str
    duration_s: float
    sample_rate_hz: float = SAMPLE_RATE_HZ
    chunk_s: float = CHUNK_S
    numerics_interval_s: float = NUMERICS_INTERVAL_S
    alarm_interval_s: float | None = None
    flood: bool = False
    # Extra time after the run for the last acks to arrive.
    settle_s: float = 2.0


async def run_load(settings: LoadSettings) -> LoadReport:
    """Connect every bed, stream for the duration, and return the totals."""
    beds = [
        SimulatedBed(
            settings.url,
            device_id,
            settings.secret,
            sample_rate_hz=settings.sample_rate_hz,
            chunk_s=settings.chunk_s,
            numerics_interval_s=settings.numerics_interval_s,
            alarm_interval_s=settings.alarm_interval_s,
        )
        for device_id in settings.device_ids
    ]
    await _open_all(beds)
    connected = [bed for bed in beds if bed.stats.connected]
    logger.info("%d of %d simulated beds connected", len(connected), len(beds))
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        if settings.flood:
            runs = [bed.flood(settings.duration_s) for bed in connected]
        else:
            # Spread the beds over one chunk interval, as real beds are not in step.
            runs = [
                bed.stream(settings.duration_s, started + random.uniform(0, settings.chunk_s))
                for bed in connected
            ]
        outcomes = await asyncio.gather(*runs, return_exceptions=True)
        for bed, outcome in zip(connected, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                bed.stats.failure = repr(outcome)
        sending_s = loop.time() - started
        await asyncio.sleep(settings.settle_s)
    finally:
        await asyncio.gather(*(bed.close() for bed in beds), return_exceptions=True)
    last_ack = max((bed.stats.last_ack_at for bed in beds), default=0.0)
    return _report(beds, max(sending_s, last_ack - started))


async def _open_all(beds: list[SimulatedBed]) -> None:
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)

    async def open_one(bed: SimulatedBed) -> None:
        async with gate:
            try:
                await bed.open()
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed) as exc:
                bed.stats.failure = f"connect: {exc!r}"
                logger.warning("simulated bed %s could not connect: %s", bed.device_id, exc)

    await asyncio.gather(*(open_one(bed) for bed in beds))


def _report(beds: list[SimulatedBed], elapsed_s: float) -> LoadReport:
    latencies: list[float] = []
    lags: list[float] = []
    for bed in beds:
        latencies.extend(bed.stats.ack_latencies_s)
        lags.extend(bed.stats.send_lags_s)
    return LoadReport(
        beds=len(beds),
        connected=sum(bed.stats.connected for bed in beds),
        duration_s=elapsed_s,
        sent=sum(bed.stats.sent for bed in beds),
        acknowledged=sum(bed.stats.acknowledged for bed in beds),
        rejected=sum(bed.stats.rejected for bed in beds),
        failures=[f"{b.device_id}: {b.stats.failure}" for b in beds if b.stats.failure],
        ack_latencies_s=latencies,
        send_lags_s=lags,
    )


def device_ids(prefix: str, count: int, first: int = 1) -> list[str]:
    """Return the ids ``<prefix>0001`` ... of ``count`` simulated beds from ``first``."""
    return [f"{prefix}{index:04d}" for index in range(first, first + count)]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="aura-load",
        description="Simulate many bedside devices streaming to central's /ingest.",
    )
    parser.add_argument("--url", required=True, help="central's ingest URL, ws://HOST:PORT/ingest")
    parser.add_argument("--beds", type=int, default=10, help="number of simulated beds (default: 10)")
    parser.add_argument(
        "--device-prefix", default="load-",
        help="device ids are PREFIX0001, PREFIX0002, ... (default: load-)",
    )
    parser.add_argument(
        "--secret", required=True,
        help="the secret every simulated device was registered with",
    )
    parser.add_argument(
        "--first-bed", type=int, default=1,
        help="number of the first device id, to split beds between runs (default: 1)",
    )
    parser.add_argument("--duration", type=float, default=30.0, help="seconds to stream (default: 30)")
    parser.add_argument(
        "--sample-rate", type=float, default=SAMPLE_RATE_HZ,
        help=f"ECG sampling rate in Hz (default: {SAMPLE_RATE_HZ:g})",
    )
    parser.add_argument(
        "--chunk", type=float, default=CHUNK_S,
        help=f"seconds of ECG per message (default: {CHUNK_S:g})",
    )
    parser.add_argument(
        "--alarm-every", type=float, metavar="SECONDS",
        help="also raise a simulated high-priority alarm per bed this often",
    )
    parser.add_argument(
        "--flood", action="store_true",
        help="send as fast as acks allow instead of in real time",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.beds < 1:
        print("aura-load: --beds must be at least 1", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = LoadSettings(
        url=args.url,
        device_ids=device_ids(args.device_prefix, args.beds, args.first_bed),
        secret=args.secret,
        duration_s=args.duration,
        sample_rate_hz=args.sample_rate,
        chunk_s=args.chunk,
        alarm_interval_s=args.alarm_every,
        flood=args.flood,
    )
    report = asyncio.run(run_load(settings))
    print(report.summary(), flush=True)
    for failure in report.failures[:10]:
        print(f"failed: {failure}", file=sys.stderr)
    return 0 if report.connected == report.beds and not report.failures else 1


if __name__ == "__main__":
    sys.exit(main())
