"""The agent's buffer on a tiny filesystem that fills up and is then freed."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve

from edge_agent.agent import BedsideAgent
from edge_agent.config import parse_config
from firmware_sim.board import Board
from firmware_sim.config import BoardConfig
from firmware_sim.sources import WfdbReplay
from protocol.messages import Ack, DataGap, EcgWaveform, decode_device_message, encode

RECORD = Path(__file__).parents[2] / "firmware_sim" / "recordings" / "100"
FILESYSTEM_SIZE = "4m"
# Failed writes to wait for: more than the few non-ECG messages a second brings.
MIN_LOST_MESSAGES = 20


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FILESYSTEM_SIZE}", "tmpfs",
         str(mount_point)], capture_output=True, text=True, check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


class Ingest:
    def __init__(self) -> None:
        self.chunks: list[EcgWaveform] = []
        self.gaps: list[DataGap] = []

    async def handler(self, connection: ServerConnection) -> None:
        async for frame in connection:
            message = decode_device_message(frame)
            if isinstance(message, EcgWaveform):
                self.chunks.append(message)
            elif isinstance(message, DataGap):
                self.gaps.append(message)
            await connection.send(encode(Ack(seqs=[message.seq])).decode())


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with open(filler, "wb") as file, contextlib.suppress(OSError):
        while True:
            file.write(b"\0" * 65536)
            file.flush()
    return filler


async def test_full_disk_loses_only_reported_gap(small_disk: Path) -> None:
    ingest = Ingest()
    board = Board(WfdbReplay(RECORD, lead="MLII"), BoardConfig(speed=10.0))
    device = board.open()
    async with serve(ingest.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        agent = BedsideAgent(parse_config({
            "device": {"id": "bed-5", "secret": "x"},
            "serial": {"port": device, "reopen_delay_s": 0.2},
            "central": {"url": f"ws://127.0.0.1:{port}/ingest"},
            "buffer": {"path": str(small_disk / "buffer.sqlite3")},
        }))
        running = asyncio.create_task(agent.run())
        await asyncio.wait_for(agent.ready.wait(), 10)
        board.start()
        await asyncio.sleep(2.0)
        filler = await asyncio.to_thread(fill, small_disk)
        # SQLite first reuses space its write-ahead log already holds, so writes fail
        # only once that is used up; keep the disk full until ECG chunks are lost.
        async with asyncio.timeout(30):
            while agent.unbuffered_total < MIN_LOST_MESSAGES:
                await asyncio.sleep(0.1)
        lost_while_full = agent.unbuffered_total
        filler.unlink()
        await asyncio.sleep(3.0)
        await asyncio.to_thread(board.stop)
        await asyncio.sleep(1.5)
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    assert lost_while_full > 0, "the full disk never failed a buffer write"
    chunks = sorted(ingest.chunks, key=lambda chunk: chunk.first_sample_index)
    holes = []
    for chunk, following in zip(chunks, chunks[1:]):
        end = chunk.first_sample_index + len(chunk.samples)
        assert following.first_sample_index >= end, "overlapping or doubled samples"
        if following.first_sample_index > end:
            holes.append((end, following.first_sample_index - end))
    reported = {(gap.first_sample_index, gap.sample_count) for gap in ingest.gaps
                if gap.lead is not None}
    print(f"disk full: {lost_while_full} messages failed to buffer, holes {holes},"
          f" reported gaps {sorted(reported)}")
    assert holes, "no samples were lost, so the disk never filled"
    assert all(gap.reason == "buffer_write_failed" for gap in ingest.gaps)
    assert set(holes) <= reported
