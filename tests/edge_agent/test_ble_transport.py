"""``aura-edge scan`` and the agent's ``ble.transport`` against simulated sensors served
on a bumble HCI transport by ``python -m firmware_sim ble``, in another process."""

from __future__ import annotations

import asyncio
import re
import select
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge_agent.agent import BedsideAgent
from edge_agent.ble_scan import FoundDevice, format_table
from edge_agent.cli import main
from edge_agent.config import parse_config
from protocol.messages import VitalsNumerics, decode_device_message

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 30.0
HCI_LINE = re.compile(r"hci: (tcp-client:127\.0\.0\.1:\d+)\n")


@pytest.fixture(scope="module")
def simulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Run the simulated sensors; yield the transport a host connects with."""
    log_path = tmp_path_factory.mktemp("simulator") / "simulator.log"
    with open(log_path, "w") as log, subprocess.Popen(
        [sys.executable, "-m", "firmware_sim", "ble", "--hci", "tcp-server:127.0.0.1:0",
         "--sensors", "heart_rate,pulse_oximeter,thermometer"],
        cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=log, text=True,
    ) as process:
        try:
            yield read_hci_line(process, log_path)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()


def read_hci_line(process: subprocess.Popen[str], log_path: Path) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT_S)
    assert ready, "the simulator printed no hci line"
    line = process.stdout.readline()
    match = HCI_LINE.fullmatch(line)
    assert match, f"unexpected first line {line!r}: {log_path.read_text()[-2000:]}"
    return match.group(1)


def test_scan_lists_health_sensors(simulator: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "edge_agent.cli", "scan", "--transport", simulator,
         "--timeout", "1"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["NAME", "ADDRESS", "RSSI", "SERVICES"]
    rows = {line.split("  ")[0].strip(): line for line in lines[1:]}
    assert "D1:00:00:00:00:01" in rows["AURA HR strap"]
    assert rows["AURA HR strap"].endswith("Heart Rate")
    assert rows["AURA pulse oximeter"].endswith("Pulse Oximeter")
    assert rows["AURA thermometer"].endswith("Health Thermometer")
    assert re.search(r"-?\d+ dBm", rows["AURA pulse oximeter"])


def test_scan_rejects_bad_timeout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "--timeout", "0"]) == 2
    assert "--timeout" in capsys.readouterr().err


def test_table_names_services_and_missing_names() -> None:
    devices = [
        FoundDevice("Polar H10 1234", "A0:00:00:00:00:01", -61,
                    ("0000180d-0000-1000-8000-00805f9b34fb",
                     "0000180f-0000-1000-8000-00805f9b34fb")),
        FoundDevice(None, "A0:00:00:00:00:02", -80, ()),
    ]
    lines = format_table(devices).splitlines()
    assert lines[1].endswith("Heart Rate, Battery")
    assert lines[2].startswith("(no name)")
    assert lines[2].endswith("-")
    assert not devices[1].is_health_sensor()


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def test_agent_reads_through_transport(simulator: str, tmp_path: Path) -> None:
    config = parse_config({
        "device": {"id": "bed-9-ble", "secret": "x"},
        "central": {"url": f"ws://127.0.0.1:{closed_port()}/ingest"},
        "buffer": {"path": str(tmp_path / "buffer.sqlite3")},
        "ble": {"transport": simulator, "scan_timeout_s": 5.0,
                "sensors": [{"address": "D1:00:00:00:00:02"}]},
    })
    agent = BedsideAgent(config)
    running = asyncio.create_task(agent.run())

    async def spo2_buffered() -> bool:
        for message in await agent.buffer.next_batch(50):
            decoded = decode_device_message(message.body)
            if isinstance(decoded, VitalsNumerics) and any(
                m.code == "MDC_PULS_OXIM_SAT_O2" and m.value == 98.0
                for m in decoded.measurements
            ):
                return True
        return False

    try:
        async with asyncio.timeout(20):
            await agent.ready.wait()
            while not await spo2_buffered():
                await asyncio.sleep(0.2)
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
