import numpy as np
import pytest

from firmware_sim.config import BoardConfig
from firmware_sim.stream import FrameStream
from protocol.board import EcgPayload, HelloPayload, decode_payload
from protocol.framing import FrameParser, FrameType

SAMPLE_RATE_HZ = 200.0


class RampSource:
    """Synthetic source: counts 1, 2, 3, ... so every sample is non-zero and known."""

    sample_rate_hz = SAMPLE_RATE_HZ
    microvolts_per_count = 2.5
    lead = "II"

    def __init__(self, length: int) -> None:
        self._samples = np.arange(1, length + 1, dtype=np.int16)
        self._offset = 0

    def read(self, count: int) -> np.ndarray:
        block = self._samples[self._offset : self._offset + count]
        self._offset += len(block)
        return block


def run_stream(config: BoardConfig, length: int = 2000) -> tuple[list, FrameParser]:
    stream = FrameStream(RampSource(length), config)
    parser = FrameParser()
    frames = []
    while (chunk := stream.next_chunk()) is not None:
        frames += parser.feed(chunk.data)
    return frames, parser


def ecg_payloads(frames: list) -> list[EcgPayload]:
    return [decode_payload(f) for f in frames if f.type == FrameType.ECG]


def joined_samples(frames: list) -> np.ndarray:
    return np.concatenate([p.samples for p in ecg_payloads(frames)])


def test_stream_starts_with_hello():
    frames, _ = run_stream(BoardConfig())
    hello = decode_payload(frames[0])
    assert isinstance(hello, HelloPayload)
    assert hello.sample_rate_hz == SAMPLE_RATE_HZ
    assert hello.microvolts_per_count == 2.5
    assert hello.lead == "II"


def test_stream_repeats_hello_on_interval():
    frames, _ = run_stream(BoardConfig(hello_interval_s=2.0), length=2000)
    hello_at = []
    next_index = 0
    for frame in frames:
        if frame.type == FrameType.HELLO:
            hello_at.append(next_index)
        else:
            next_index = decode_payload(frame).next_sample_index
    # 2000 samples at 200 Hz is 10 s, so HELLO at 0, 2, 4, 6 and 8 s.
    assert hello_at == [0, 400, 800, 1200, 1600]


def test_stream_ecg_blocks_are_contiguous():
    frames, parser = run_stream(BoardConfig(frame_duration_s=0.1))
    payloads = ecg_payloads(frames)
    assert all(len(p.samples) == 20 for p in payloads)
    for before, after in zip(payloads, payloads[1:], strict=False):
        assert after.first_sample_index == before.next_sample_index
    np.testing.assert_array_equal(joined_samples(frames), np.arange(1, 2001))
    assert parser.sequence_gaps == 0
    assert [f.sequence for f in frames] == list(range(len(frames)))


def test_stream_chunk_ready_time_is_end_of_block():
    stream = FrameStream(RampSource(100), BoardConfig(frame_duration_s=0.1))
    assert stream.next_chunk().ready_at_s == pytest.approx(0.1)
    assert stream.next_chunk().ready_at_s == pytest.approx(0.2)


def test_stream_flatline_window():
    config = BoardConfig(flatline_at_s=1.03, flatline_for_s=2.0)
    samples = joined_samples(run_stream(config)[0])
    # 1.03 s to 3.03 s at 200 Hz is samples 206 to 605, across block boundaries.
    assert np.all(samples[206:606] == 0)
    np.testing.assert_array_equal(samples[:206], np.arange(1, 207))
    np.testing.assert_array_equal(samples[606:], np.arange(607, 2001))


def test_stream_forced_flatline():
    stream = FrameStream(RampSource(1000), BoardConfig())
    first = decode_payload(FrameParser().feed(stream.next_chunk().data)[-1])
    stream.set_flatline(True)
    forced = decode_payload(FrameParser().feed(stream.next_chunk().data)[-1])
    stream.set_flatline(False)
    after = decode_payload(FrameParser().feed(stream.next_chunk().data)[-1])
    assert all(first.samples)
    assert set(forced.samples) == {0}
    assert all(after.samples)
    assert after.first_sample_index == forced.next_sample_index


def test_stream_garbage_keeps_all_frames():
    clean, _ = run_stream(BoardConfig(seed=1))
    noisy, parser = run_stream(BoardConfig(garbage_every=3, garbage_bytes=25, seed=1))
    assert noisy == clean
    assert parser.bytes_discarded >= 25 * (len(clean) // 3)


def test_stream_corrupt_crc_every_kth_frame():
    clean, _ = run_stream(BoardConfig())
    received, parser = run_stream(BoardConfig(corrupt_crc_every=4))
    expected = [f for f in clean if (f.sequence + 1) % 4 != 0]
    assert received == expected
    assert parser.crc_failures == len(clean) // 4
    assert parser.frames_lost == len(clean) // 4


def test_stream_counts_in_chunks():
    stream = FrameStream(
        RampSource(100), BoardConfig(garbage_every=1, garbage_bytes=3, seed=0)
    )
    chunk = stream.next_chunk()
    assert chunk.frames == 2
    assert chunk.samples == 20
    assert chunk.garbage_bytes == 6
    assert chunk.corrupted_frames == 0


def test_stream_rejects_frame_too_long():
    with pytest.raises(ValueError, match="frame_duration_s"):
        FrameStream(RampSource(10), BoardConfig(frame_duration_s=20.0))


@pytest.mark.parametrize(
    "settings",
    [
        {"speed": -1.0},
        {"flatline_at_s": 1.0},
        {"flatline_at_s": 1.0, "flatline_for_s": 0.0},
        {"garbage_every": 2},
        {"write_timeout_s": 0.0},
    ],
)
def test_board_config_rejects_invalid(settings):
    with pytest.raises(ValueError, match="flatline|speed|garbage|write_timeout"):
        BoardConfig(**settings)
