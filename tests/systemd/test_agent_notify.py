"""The agent speaks the sd_notify protocol to a socket the test owns."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from firmware_sim.board import Board
from firmware_sim.config import BoardConfig
from firmware_sim.sources import WfdbReplay

RECORD = Path(__file__).parents[2] / "firmware_sim" / "recordings" / "100"


def receive_states(receiver: socket.socket, until: str, timeout_s: float) -> list[str]:
    states: list[str] = []
    deadline = time.monotonic() + timeout_s
    while until not in states and time.monotonic() < deadline:
        receiver.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            states.append(receiver.recv(256).decode())
        except TimeoutError:
            break
    return states


def test_ready_watchdog_and_stopping(tmp_path: Path) -> None:
    board = Board(WfdbReplay(RECORD, lead="MLII"), BoardConfig(speed=1.0))
    device = board.open()
    board.start()
    config = tmp_path / "agent.toml"
    config.write_text(f"""
[device]
id = "bed-3"
secret = "x"
[serial]
port = "{device}"
[central]
url = "ws://127.0.0.1:9/ingest"
[buffer]
path = "{tmp_path / 'buffer.sqlite3'}"
""")
    notify_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(notify_path))
        environment = dict(os.environ, NOTIFY_SOCKET=str(notify_path),
                           WATCHDOG_USEC="600000")
        agent = subprocess.Popen(
            [sys.executable, "-m", "edge_agent", "run", "--config", str(config)],
            env=environment, stderr=subprocess.DEVNULL,
        )
        try:
            states = receive_states(receiver, "WATCHDOG=1", 20)
            assert "READY=1" in states
            assert "WATCHDOG=1" in states
            agent.send_signal(signal.SIGTERM)
            assert "STOPPING=1" in receive_states(receiver, "STOPPING=1", 20)
            assert agent.wait(20) == 0
        finally:
            agent.kill()
            agent.wait()
            board.stop()
