"""The unit files and the agent's sd_notify messages."""

import os
import shutil
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from edge_agent.service import notify

UNITS = Path(__file__).parents[2] / "systemd"


def test_notify_sends_state_to_socket(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        assert notify("READY=1")
        assert receiver.recv(64) == b"READY=1"


def test_notify_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"aura-test-{id(monkeypatch)}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("STOPPING=1")
        assert receiver.recv(64) == b"STOPPING=1"


def test_notify_without_systemd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not notify("READY=1")


@pytest.mark.parametrize("unit", ["aura-edge.service", "aura-central.service"])
@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_unit_verifies(unit: str, tmp_path: Path) -> None:
    # The units name the installed location; point ExecStart at a binary that exists.
    text = (UNITS / unit).read_text()
    text = text.replace("/opt/aura-one/.venv/bin/aura-edge", sys.executable)
    text = text.replace("/opt/aura-one/.venv/bin/aura-central", sys.executable)
    copy = tmp_path / unit
    copy.write_text(text)
    result = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True,
        check=False,
    )
    problems = [line for line in result.stderr.splitlines() if unit in line]
    assert result.returncode == 0, result.stderr
    assert problems == []


def test_central_notifies_ready_and_stopping(tmp_path: Path) -> None:
    notify_path = tmp_path / "notify.sock"
    port = _free_port()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(str(notify_path))
        receiver.settimeout(60)
        environment = {key: value for key, value in os.environ.items()
                       if not key.startswith("AURA_") and key != "DATABASE_URL"}
        environment.update(NOTIFY_SOCKET=str(notify_path), AURA_PORT=str(port),
                           AURA_DATA_DIR=str(tmp_path / "central"),
                           JWT_SECRET="x" * 40)
        central = subprocess.Popen(
            [sys.executable, "-m", "central.cli", "serve"], env=environment,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert receiver.recv(64) == b"READY=1"
            central.send_signal(signal.SIGTERM)
            assert receiver.recv(64) == b"STOPPING=1"
            central.wait(30)
        finally:
            central.kill()
            central.wait()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
