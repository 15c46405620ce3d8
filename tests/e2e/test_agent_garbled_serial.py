"""The agent in-process between a garbling board on a real pty and a scripted ingest."""

from __future__ import annotations

import asyncio
from pathlib import Path

from websockets.asyncio.server import ServerConnection, serve

from edge_agent.agent import BedsideAgent
from edge_agent.config import parse_config
from firmware_sim.board import Board
from firmware_sim.config import BoardConfig
from firmware_sim.sources import WfdbReplay
from protocol.messages import Ack, EcgWaveform, VitalsNumerics, decode_device_message, encode

RECORD = Path(__file__).parents[2] / "firmware_sim" / "recordings" / "100"
RECORD_SECONDS = 12.0


class Ingest:
    def __init__(self) -> None:
        self.waveforms: dict[int, EcgWaveform] = {}
        self.heart_rates: list[float] = []

    async def handler(self, connection: ServerConnection) -> None:
        async for frame in connection:
            message = decode_device_message(frame)
            if isinstance(message, EcgWaveform):
                self.waveforms[message.seq] = message
            elif isinstance(message, VitalsNumerics):
                self.heart_rates += [m.value for m in message.measurements]
            await connection.send(encode(Ack(seqs=[message.seq])).decode())


async def test_garbled_frames_skipped_and_stream_continues(tmp_path: Path) -> None:
    ingest = Ingest()
    board = Board(
        WfdbReplay(RECORD, lead="MLII", loop=False),
        BoardConfig(speed=20.0, garbage_every=7, garbage_bytes=23, corrupt_crc_every=11,
                    seed=5),
    )
    device = board.open()
    async with serve(ingest.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        config = parse_config({
            "device": {"id": "bed-9", "secret": "x"},
            "serial": {"port": device, "reopen_delay_s": 0.2},
            "central": {"url": f"ws://127.0.0.1:{port}/ingest"},
            "buffer": {"path": str(tmp_path / "buffer.sqlite3")},
        })
        agent = BedsideAgent(config)
        running = asyncio.create_task(agent.run())
        await asyncio.wait_for(agent.ready.wait(), 10)
        board.start()
        async with asyncio.timeout(30):
            while board.samples_sent < RECORD_SECONDS * 360:
                await asyncio.sleep(0.1)
        await asyncio.to_thread(board.stop)
        await asyncio.sleep(1.0)
        parser = agent.source.parser
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)

    assert board.frames_corrupted > 0
    assert parser.crc_failures == board.frames_corrupted
    assert parser.frames_ok == board.frames_sent - board.frames_corrupted
    assert board.frames_dropped == 0
    chunks = sorted(ingest.waveforms.values(), key=lambda chunk: chunk.first_sample_index)
    received = sum(len(chunk.samples) for chunk in chunks)
    lost = board.frames_corrupted * 36  # 0.1 s frames at 360 Hz
    assert received >= RECORD_SECONDS * 360 - lost - 36
    assert ingest.heart_rates, "no heart rate despite the garbled frames"
    assert all(60 <= rate <= 90 for rate in ingest.heart_rates)
