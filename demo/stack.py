"""Start and stop the parts of AURA ONE as separate processes, as they run on a ward.

Each part runs through its own console command, so the demo and the end-to-end tests
exercise exactly what a deployment runs. Only the wiring lives here: free ports,
generated secrets, the agent's configuration file and orderly shutdown.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

logger = logging.getLogger(__name__)

DEVICE_ID = "bed-1-board"
PATIENT_ID = "P-0001"
ASSIGNED_NURSE = "nurse.ana"
UNASSIGNED_NURSE = "nurse.ben"
CENTRAL_START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# Every part runs in its own session, so a Ctrl-C at the terminal reaches only the
# demo, which then stops the parts in an order that loses nothing.


def _command(module: str) -> list[str]:
    # Run each part with this interpreter so the demo works from any virtualenv.
    return [sys.executable, "-m", module]


@dataclass
class Stack:
    """One ward's worth of processes under ``workdir``."""

    workdir: Path
    record: str | None = None
    speed: float = 1.0
    flatline_at_s: float | None = None
    flatline_for_s: float | None = None
    log_level: str = "INFO"
    database_url: str | None = None
    # Where the agent sends its messages when not straight to central, for example
    # through a fault-injecting proxy; None means central's own /ingest.
    agent_central_url: str | None = None
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    device_secret: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    jwt_secret: str = field(default_factory=lambda: secrets.token_hex(32))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def events_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/events"

    @property
    def ingest_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ingest"

    @property
    def board_link(self) -> Path:
        return self.workdir / "board.tty"

    @property
    def buffer_path(self) -> Path:
        return self.workdir / "agent" / "buffer.sqlite3"

    def central_environment(self) -> dict[str, str]:
        environment = {
            key: value for key, value in os.environ.items() if not key.startswith("AURA_")
        }
        environment.update(
            AURA_DATA_DIR=str(self.workdir / "central"),
            AURA_HOST="127.0.0.1",
            AURA_PORT=str(self.port),
            AURA_LOG_LEVEL=self.log_level,
            JWT_SECRET=self.jwt_secret,
        )
        environment.pop("DATABASE_URL", None)
        if self.database_url:
            environment["DATABASE_URL"] = self.database_url
        return environment

    def _log_file(self, name: str) -> int:
        path = self.workdir / "logs" / f"{name}.log"
        path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def seed(self) -> dict[str, object]:
        """Create the demo ward, patient, nurses and device in central's database."""
        result = subprocess.run(
            _command("central.cli") + [
                # "=" keeps a generated secret that starts with "-" from looking
                # like an option.
                "seed-demo", f"--device-id={DEVICE_ID}",
                f"--device-secret={self.device_secret}", f"--password={self.password}",
            ],
            env=self.central_environment(), capture_output=True, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"seeding central failed: {result.stderr.decode(errors='replace')}"
            )
        summary: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
        return summary

    def start_central(self) -> None:
        log = self._log_file("central")
        self.processes["central"] = subprocess.Popen(
            _command("central.cli") + ["serve"], env=self.central_environment(),
            stdout=log, stderr=log, start_new_session=True,
        )
        os.close(log)
        self.wait_for_central()

    def wait_for_central(self) -> None:
        deadline = time.monotonic() + CENTRAL_START_TIMEOUT_S
        while time.monotonic() < deadline:
            process = self.processes["central"]
            if process.poll() is not None:
                raise RuntimeError(
                    f"central exited with status {process.returncode}; see "
                    f"{self.workdir / 'logs' / 'central.log'}"
                )
            try:
                if httpx.get(f"{self.base_url}/health", timeout=1.0).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"central did not respond on {self.base_url} in time")

    def start_board(self) -> str:
        """Start the simulated sensor board; return its pseudo-terminal path."""
        arguments = ["--link", str(self.board_link), "--speed", str(self.speed)]
        if self.record:
            arguments += ["--record", self.record]
        if self.flatline_at_s is not None:
            arguments += ["--flatline-at", str(self.flatline_at_s),
                          "--flatline-for", str(self.flatline_for_s or 6.0)]
        log = self._log_file("board")
        process = subprocess.Popen(
            _command("firmware_sim") + arguments, stdout=subprocess.PIPE, stderr=log,
            start_new_session=True,
        )
        os.close(log)
        self.processes["board"] = process
        assert process.stdout is not None
        line = process.stdout.readline().decode().strip()
        if not line.startswith("device: "):
            process.wait(STOP_TIMEOUT_S)
            log_text = (self.workdir / "logs" / "board.log").read_text(errors="replace")
            last_lines = "\n".join(log_text.strip().splitlines()[-5:])
            raise RuntimeError(f"the sensor board did not start:\n{last_lines}")
        return line.removeprefix("device: ")

    def write_agent_config(self) -> Path:
        path = self.workdir / "agent" / "agent.toml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(
            f"""[device]
id = "{DEVICE_ID}"
secret = "{self.device_secret}"
bed = "bed-1"

[serial]
port = "{self.board_link}"
reopen_delay_s = 0.5

[central]
url = "{self.agent_central_url or self.ingest_url}"
reconnect_min_delay_s = 0.2
reconnect_max_delay_s = 2.0

[buffer]
path = "{self.buffer_path}"

[dsp]
# Samples arrive faster than their rate when the board replays at more than 1x.
check_sample_rate = {"true" if self.speed == 1.0 else "false"}
"""
        )
        return path

    def start_agent(self) -> None:
        config = self.write_agent_config()
        log = self._log_file("agent")
        self.processes["agent"] = subprocess.Popen(
            _command("edge_agent") + ["--log-level", self.log_level, "run",
                                      "--config", str(config)],
            stdout=log, stderr=log, start_new_session=True,
        )
        os.close(log)

    def stop(self, name: str, signum: int = signal.SIGTERM) -> int | None:
        """Stop one part; return its exit status."""
        process = self.processes.pop(name, None)
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signum)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                logger.warning("%s did not stop in %.0f s; killing it", name, STOP_TIMEOUT_S)
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()
        return process.returncode

    def stop_all(self) -> None:
        # The board first, so the agent's last frames are complete, and central last,
        # so the agent can deliver what it still holds.
        for name in ("board", "agent", "central"):
            self.stop(name)

    def login(self, username: str) -> str:
        response = httpx.post(
            f"{self.base_url}/auth/login",
            json={"username": username, "password": self.password}, timeout=10.0,
        )
        response.raise_for_status()
        token: str = response.json()["access_token"]
        return token
