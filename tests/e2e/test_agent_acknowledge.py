"""An acknowledgement from central clears the agent's latched asystole alarm."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from edge_agent.agent import BedsideAgent
from edge_agent.config import parse_config
from firmware_sim.board import Board
from firmware_sim.config import BoardConfig
from firmware_sim.sources import WfdbReplay
from protocol.messages import (
    Ack,
    AlarmAcknowledge,
    Emergency,
    decode_device_message,
    encode,
)

RECORD = Path(__file__).parents[2] / "firmware_sim" / "recordings" / "100"
SPEED = 5.0
FLATLINE_AT_S = 10.0  # record time
FLATLINE_FOR_S = 8.0


class ScriptedIngest:
    """Acks every message, keeps the alarms, and acknowledges one alarm on request."""

    def __init__(self) -> None:
        self.alarms: list[Emergency] = []
        self.connection: ServerConnection | None = None

    async def handler(self, connection: ServerConnection) -> None:
        # The agent may reconnect (a missed ping under load); acknowledge on the
        # newest connection.
        self.connection = connection
        with contextlib.suppress(ConnectionClosed):
            async for frame in connection:
                message = decode_device_message(frame)
                if isinstance(message, Emergency):
                    self.alarms.append(message)
                await connection.send(encode(Ack(seqs=[message.seq])))

    def find(self, kind: str, state: str) -> Emergency | None:
        for alarm in self.alarms:
            if alarm.kind == kind and alarm.state == state:
                return alarm
        return None

    async def acknowledge(self, alarm_id: str, kind: str) -> None:
        assert self.connection is not None
        message = AlarmAcknowledge(
            alarm_id=alarm_id, kind=kind, acknowledged_by="Ana Nurse",
            acknowledged_at=datetime.now(UTC),
        )
        await self.connection.send(encode(message))


async def wait_until(predicate: Callable[[], bool], timeout_s: float) -> None:
    async with asyncio.timeout(timeout_s):
        while not predicate():
            await asyncio.sleep(0.05)


def asystole_latched(agent: BedsideAgent) -> bool:
    if agent.stream is None:
        return False
    return any(
        status.kind == "asystole" and not status.condition_present
        for status in agent.stream.analyzer.alarm_status()
    )


@pytest.mark.timeout(90)
async def test_central_acknowledge_clears_latched_asystole(tmp_path: Path) -> None:
    board = Board(
        WfdbReplay(RECORD, lead="MLII"),
        BoardConfig(speed=SPEED, flatline_at_s=FLATLINE_AT_S,
                    flatline_for_s=FLATLINE_FOR_S),
    )
    device = board.open()
    ingest = ScriptedIngest()
    async with serve(ingest.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        config = parse_config({
            "device": {"id": "bed-7", "secret": "x"},
            "serial": {"port": device, "reopen_delay_s": 0.2},
            "central": {"url": f"ws://127.0.0.1:{port}/ingest",
                        "reconnect_min_delay_s": 0.1, "reconnect_max_delay_s": 0.2},
            "buffer": {"path": str(tmp_path / "buffer.sqlite3")},
        })
        agent = BedsideAgent(config)
        running = asyncio.create_task(agent.run())
        try:
            await asyncio.wait_for(agent.ready.wait(), 10)
            board.start()
            await wait_until(lambda: ingest.find("asystole", "raised") is not None, 30)
            raised = ingest.find("asystole", "raised")
            assert raised is not None
            assert raised.priority == "high"
            # The beats are back but the high-priority alarm stays raised until
            # someone acknowledges it.
            await wait_until(lambda: asystole_latched(agent), 30)
            assert ingest.find("asystole", "cleared") is None
            # An acknowledgement of an earlier episode leaves the current one latched.
            await ingest.acknowledge("asystole-1", "asystole")
            await asyncio.sleep(1.0)
            assert ingest.find("asystole", "cleared") is None
            await ingest.acknowledge(raised.alarm_id, raised.kind)
            await wait_until(lambda: ingest.find("asystole", "cleared") is not None, 10)
            cleared = ingest.find("asystole", "cleared")
            assert cleared is not None
            assert cleared.alarm_id == raised.alarm_id
            assert "Acknowledged" in cleared.evidence
        finally:
            running.cancel()
            await asyncio.gather(running, return_exceptions=True)
            await asyncio.to_thread(board.stop)
