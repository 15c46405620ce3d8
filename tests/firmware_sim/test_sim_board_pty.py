"""The simulated board read through a real pseudo-terminal with pyserial."""

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
import serial

from firmware_sim.board import Board
from firmware_sim.config import BoardConfig

# wfdb comes through the module that silences its pandas warning on import.
from firmware_sim.sources import WfdbReplay, wfdb
from protocol.board import EcgPayload, HelloPayload, decode_payload
from protocol.framing import Frame, FrameParser, FrameType

RECORD_100 = Path(__file__).resolve().parents[2] / "firmware_sim" / "recordings" / "100"
SAMPLE_RATE_HZ = 360
READ_TIMEOUT_S = 10.0


@pytest.fixture(scope="module")
def record_counts() -> np.ndarray:
    record = wfdb.rdrecord(str(RECORD_100), physical=False, channels=[0])
    return record.d_signal[:, 0] - record.baseline[0]


class Reader:
    """A pyserial reader that collects frames until a condition holds."""

    def __init__(self, device_path: str) -> None:
        self.port = serial.Serial(device_path, timeout=0.05)
        self.parser = FrameParser()
        self.frames: list[Frame] = []

    def read_until(self, done: Callable[[list[Frame]], bool]) -> list[Frame]:
        deadline = time.monotonic() + READ_TIMEOUT_S
        while not done(self.frames):
            if time.monotonic() > deadline:
                raise TimeoutError(f"condition not met after {len(self.frames)} frames")
            self.frames += self.parser.feed(self.port.read(4096))
        return self.frames

    def ecg(self) -> list[EcgPayload]:
        return [decode_payload(f) for f in self.frames if f.type == FrameType.ECG]

    def close(self) -> None:
        self.port.close()


def ecg_reaches(sample_index: int) -> Callable[[list[Frame]], bool]:
    def done(frames: list[Frame]) -> bool:
        ecg = [f for f in frames if f.type == FrameType.ECG]
        return bool(ecg) and decode_payload(ecg[-1]).next_sample_index >= sample_index

    return done


@pytest.fixture
def open_board() -> Iterator[Callable[..., tuple[Board, Reader]]]:
    """Open a board and a reader on its device, then start streaming."""
    opened: list[tuple[Board, Reader]] = []

    def open_(**settings: object) -> tuple[Board, Reader]:
        board = Board(WfdbReplay(RECORD_100), BoardConfig(**settings))
        reader = Reader(board.open())
        opened.append((board, reader))
        board.start()
        return board, reader

    yield open_
    for board, reader in opened:
        reader.close()
        board.stop()


def test_board_hello_first_then_record_samples(open_board, record_counts):
    board, reader = open_board(speed=20.0)
    frames = reader.read_until(ecg_reaches(3 * SAMPLE_RATE_HZ))
    hello = decode_payload(frames[0])
    assert isinstance(hello, HelloPayload)
    assert hello.lead == "MLII"
    assert hello.sample_rate_hz == SAMPLE_RATE_HZ
    assert hello.microvolts_per_count == 5.0
    ecg = reader.ecg()
    assert ecg[0].first_sample_index == 0
    samples = np.concatenate([p.samples for p in ecg])
    np.testing.assert_array_equal(samples, record_counts[: len(samples)])
    assert reader.parser.crc_failures == 0
    assert reader.parser.sequence_gaps == 0


def test_board_paces_at_speed_factor(open_board):
    start = time.monotonic()
    _, reader = open_board(speed=10.0)
    reader.read_until(ecg_reaches(2 * SAMPLE_RATE_HZ))
    elapsed = time.monotonic() - start
    # 2 s of record at 10x takes 0.2 s; the upper bound leaves room for a busy host.
    assert elapsed >= 0.19
    assert elapsed < 2.0


def test_board_repeats_hello(open_board):
    _, reader = open_board(speed=50.0, hello_interval_s=1.0)
    frames = reader.read_until(ecg_reaches(3 * SAMPLE_RATE_HZ + 1))
    hello_at = []
    next_index = 0
    for frame in frames:
        if frame.type == FrameType.HELLO:
            hello_at.append(next_index)
        else:
            next_index = decode_payload(frame).next_sample_index
    assert hello_at[:4] == [0, 360, 720, 1080]


def test_board_flatline_window(open_board, record_counts):
    _, reader = open_board(speed=20.0, flatline_at_s=1.0, flatline_for_s=0.5)
    reader.read_until(ecg_reaches(3 * SAMPLE_RATE_HZ))
    samples = np.concatenate([p.samples for p in reader.ecg()])
    start, end = SAMPLE_RATE_HZ, SAMPLE_RATE_HZ * 3 // 2
    assert np.all(samples[start:end] == 0)
    np.testing.assert_array_equal(samples[:start], record_counts[:start])
    np.testing.assert_array_equal(samples[end:], record_counts[end : len(samples)])


def test_board_set_flatline_at_run_time(open_board):
    board, reader = open_board(speed=20.0)
    reader.read_until(ecg_reaches(SAMPLE_RATE_HZ))
    board.set_flatline(True)
    switched_at = reader.ecg()[-1].next_sample_index
    # Frames already queued may still carry the lead, so look 1 s further on.
    reader.read_until(ecg_reaches(switched_at + 2 * SAMPLE_RATE_HZ))
    assert set(reader.ecg()[-1].samples) == {0}
    assert board.flatline_forced
    board.set_flatline(False)
    flat_until = reader.ecg()[-1].next_sample_index
    reader.read_until(ecg_reaches(flat_until + 2 * SAMPLE_RATE_HZ))
    assert any(reader.ecg()[-1].samples)


def test_board_garbage_and_bad_crc_keep_good_frames(open_board, record_counts):
    corrupt_every = 7
    board, reader = open_board(
        speed=50.0, garbage_every=3, garbage_bytes=20, corrupt_crc_every=corrupt_every
    )
    frames = reader.read_until(ecg_reaches(5 * SAMPLE_RATE_HZ))
    received = {f.sequence for f in frames}
    last = frames[-1].sequence
    expected = {s for s in range(last + 1) if (s + 1) % corrupt_every != 0}
    assert received == expected
    assert reader.parser.crc_failures >= last // corrupt_every
    for payload in reader.ecg():
        start, end = payload.first_sample_index, payload.next_sample_index
        np.testing.assert_array_equal(payload.samples, record_counts[start:end])


def test_board_counts_match_reader_at_end():
    short_source = WfdbReplay(RECORD_100, loop=False)
    short_source.samples = short_source.samples[:1000]
    board = Board(short_source, BoardConfig(speed=0))
    reader = Reader(board.open())
    try:
        board.start()
        reader.read_until(ecg_reaches(1000))
        assert board.wait(READ_TIMEOUT_S)
        assert board.samples_sent == 1000
        assert board.frames_sent == reader.parser.frames_ok
        assert board.frames_dropped == 0
    finally:
        reader.close()
        board.stop()


def test_board_drops_frames_without_reader():
    board = Board(
        WfdbReplay(RECORD_100), BoardConfig(speed=1000.0, write_timeout_s=0.05)
    )
    try:
        board.start()
        deadline = time.monotonic() + READ_TIMEOUT_S
        while board.frames_dropped == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert board.frames_dropped > 0
        assert board.bytes_dropped > 0
        # A reader that connects late gets frames again, starting with a HELLO
        # within one interval.
        reader = Reader(board.device_path)
        try:
            sent_before = board.frames_sent
            frames = reader.read_until(
                lambda frames: any(f.type == FrameType.HELLO for f in frames)
            )
            assert board.frames_sent > sent_before
            assert frames
        finally:
            reader.close()
    finally:
        started = time.monotonic()
        board.stop()
        assert time.monotonic() - started < 1.0
