"""Technical alarms the agent raises by itself: central unreachable, sensor silent."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from edge_agent.agent import BedsideAgent
from edge_agent.config import parse_config
from firmware_sim.board import Board
from firmware_sim.config import BoardConfig
from firmware_sim.sources import WfdbReplay

RECORD = Path(__file__).parents[2] / "firmware_sim" / "recordings" / "100"


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # nothing listens here once the socket is closed


async def local_alarms(agent: BedsideAgent) -> list[tuple[str, str]]:
    async with agent.buffer.db.execute(
        "SELECT kind, state FROM local_alarms ORDER BY id"
    ) as cursor:
        return [(kind, state) for kind, state in await cursor.fetchall()]


async def test_link_lost_and_sensor_silent_raised(tmp_path: Path) -> None:
    board = Board(WfdbReplay(RECORD, lead="MLII"), BoardConfig(speed=1.0))
    device = board.open()
    config = parse_config({
        "device": {"id": "bed-7", "secret": "x"},
        "serial": {"port": device, "reopen_delay_s": 0.2},
        "central": {"url": f"ws://127.0.0.1:{closed_port()}/ingest",
                    "reconnect_min_delay_s": 0.1, "reconnect_max_delay_s": 0.2},
        "buffer": {"path": str(tmp_path / "buffer.sqlite3")},
        "alarms": {"link_lost_s": 1.0, "sensor_silent_s": 1.0},
    })
    agent = BedsideAgent(config)
    running = asyncio.create_task(agent.run())
    try:
        await asyncio.wait_for(agent.ready.wait(), 10)
        board.start()

        async def raised(kind: str) -> None:
            while (kind, "raised") not in await local_alarms(agent):
                await asyncio.sleep(0.1)

        await asyncio.wait_for(raised("link_lost"), 10)
        await asyncio.to_thread(board.stop)
        await asyncio.wait_for(raised("sensor_silent"), 10)
        # Both wait in the buffer for central, alarms first.
        batch = await agent.buffer.next_batch(2)
        assert all(message.priority.name == "ALARM" for message in batch)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        board.stop()
