"""``python -m firmware_sim`` as a subprocess: device line, frames, signals, exit."""

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import serial

from protocol.board import decode_payload
from protocol.framing import FrameParser, FrameType

REPO_ROOT = Path(__file__).resolve().parents[2]
STARTUP_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 10.0
SAMPLE_RATE_HZ = 360


def read_device_line(process: subprocess.Popen) -> str:
    ready, _, _ = select.select([process.stdout], [], [], STARTUP_TIMEOUT_S)
    assert ready, "no device line on stdout"
    line = process.stdout.readline()
    match = re.fullmatch(r"device: (/dev/\S+)\n", line)
    assert match, f"unexpected first line {line!r}"
    return match.group(1)


def read_ecg_until(port: serial.Serial, parser: FrameParser, sample_index: int) -> list:
    frames = []
    deadline = time.monotonic() + READ_TIMEOUT_S
    while time.monotonic() < deadline:
        frames += parser.feed(port.read(4096))
        ecg = [decode_payload(f) for f in frames if f.type == FrameType.ECG]
        if ecg and ecg[-1].next_sample_index >= sample_index:
            return frames
    raise TimeoutError(f"ECG did not reach sample {sample_index}")


def test_cli_streams_and_stops_on_sigterm(tmp_path):
    link = tmp_path / "board"
    process = subprocess.Popen(
        [sys.executable, "-m", "firmware_sim", "--speed", "10", "--link", str(link)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        device = read_device_line(process)
        assert os.readlink(link) == device
        parser = FrameParser()
        with serial.Serial(str(link), timeout=0.05) as port:
            frames = read_ecg_until(port, parser, SAMPLE_RATE_HZ)
            assert any(f.type == FrameType.HELLO for f in frames)
            process.send_signal(signal.SIGUSR1)
            flat_from = decode_payload(frames[-1]).next_sample_index
            frames = read_ecg_until(port, parser, flat_from + 2 * SAMPLE_RATE_HZ)
            assert set(decode_payload(frames[-1]).samples) == {0}
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=READ_TIMEOUT_S)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 0
    summary = re.search(r"^sent (\d+) frames, (\d+) samples$", stderr, re.MULTILINE)
    assert summary, stderr
    assert int(summary.group(1)) >= parser.frames_ok
    assert int(summary.group(2)) >= 3 * SAMPLE_RATE_HZ
    assert not link.is_symlink()


def test_cli_unknown_lead_fails():
    result = subprocess.run(
        [sys.executable, "-m", "firmware_sim", "--lead", "aVF"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=STARTUP_TIMEOUT_S,
    )
    assert result.returncode == 1
    assert "MLII, V5" in result.stderr
    assert result.stdout == ""
