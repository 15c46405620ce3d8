import logging
import random

import pytest

from protocol.errors import ProtocolError
from protocol.framing import (
    FRAME_OVERHEAD,
    MAX_PAYLOAD_SIZE,
    START_MARKER,
    Frame,
    FrameParser,
    FrameType,
    encode_frame,
)

# The worked example in docs/serial-protocol.md: ECG frame, sequence 7, samples from
# index 720 with counts 12, -5, 300.
DOC_EXAMPLE_HEX = (
    "a5 5a 10 00 02 07 00 00 00 d0 02 00 00 00 00 00 00 03 00 0c 00 fb ff 2c 01 "
    "0c a8 f4 12"
)
DOC_EXAMPLE_PAYLOAD = bytes.fromhex("d0 02 00 00 00 00 00 00 03 00 0c 00 fb ff 2c 01")


def make_frames(count: int, start_sequence: int = 0) -> list[Frame]:
    return [
        Frame(FrameType.ECG, start_sequence + i, bytes([i % 256]) * (i % 7 + 1))
        for i in range(count)
    ]


def wire(frames: list[Frame]) -> bytes:
    return b"".join(frame.to_bytes() for frame in frames)


def noise_without_marker(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    # 0xA5 never appears, so the noise cannot contain a start marker.
    return bytes(rng.choice([b for b in range(256) if b != 0xA5]) for _ in range(size))


def test_encode_matches_documented_example():
    encoded = encode_frame(FrameType.ECG, 7, DOC_EXAMPLE_PAYLOAD)
    assert encoded == bytes.fromhex(DOC_EXAMPLE_HEX)


def test_encode_wraps_sequence():
    encoded = encode_frame(FrameType.STATUS, 2**32 + 5, b"\x00\x00")
    (frame,) = FrameParser().feed(encoded)
    assert frame.sequence == 5


def test_frame_rejects_oversized_payload():
    with pytest.raises(ProtocolError) as caught:
        Frame(FrameType.ECG, 0, bytes(MAX_PAYLOAD_SIZE + 1))
    assert caught.value.field == "length"


def test_frame_rejects_sequence_out_of_range():
    with pytest.raises(ProtocolError) as caught:
        Frame(FrameType.ECG, 2**32, b"")
    assert caught.value.field == "sequence"


def test_parser_single_frame_round_trip():
    frame = Frame(FrameType.HELLO, 42, b"hello payload")
    parser = FrameParser()
    assert parser.feed(frame.to_bytes()) == [frame]
    assert parser.frames_ok == 1
    assert parser.pending_bytes == 0


def test_parser_returns_frame_type_enum():
    (frame,) = FrameParser().feed(encode_frame(2, 0, b"x"))
    assert frame.type is FrameType.ECG


def test_parser_passes_unknown_type_through():
    (frame,) = FrameParser().feed(encode_frame(200, 0, b"x"))
    assert frame.type == 200
    assert not isinstance(frame.type, FrameType)


def test_parser_max_size_payload():
    frame = Frame(FrameType.ECG, 0, bytes(range(256)) * (MAX_PAYLOAD_SIZE // 256))
    assert FrameParser().feed(frame.to_bytes()) == [frame]


def test_parser_empty_payload():
    frame = Frame(FrameType.STATUS, 3, b"")
    assert FrameParser().feed(frame.to_bytes()) == [frame]


def test_parser_frames_split_across_random_reads():
    frames = make_frames(50)
    data = wire(frames)
    rng = random.Random(3)
    parser = FrameParser()
    received = []
    offset = 0
    while offset < len(data):
        size = rng.randint(1, 40)
        received += parser.feed(data[offset : offset + size])
        offset += size
    assert received == frames
    assert parser.frames_ok == 50
    assert parser.bytes_discarded == 0
    assert parser.pending_bytes == 0


def test_parser_one_byte_at_a_time():
    frames = make_frames(10)
    parser = FrameParser()
    received = []
    for byte in wire(frames):
        received += parser.feed(bytes([byte]))
    assert received == frames
    assert parser.frames_ok == 10
    assert parser.crc_failures == 0


def test_parser_garbage_between_frames():
    frames = make_frames(6)
    garbage = [noise_without_marker(size, seed) for seed, size in enumerate([5, 33, 1])]
    data = (
        garbage[0]
        + frames[0].to_bytes()
        + frames[1].to_bytes()
        + garbage[1]
        + wire(frames[2:5])
        + garbage[2]
        + frames[5].to_bytes()
    )
    parser = FrameParser()
    assert parser.feed(data) == frames
    assert parser.bytes_discarded == 5 + 33 + 1
    assert parser.crc_failures == 0
    assert parser.sequence_gaps == 0


def test_parser_garbage_with_false_marker():
    frames = make_frames(3)
    # A start marker followed by a plausible length, as line noise may produce.
    false_start = START_MARKER + bytes([20, 0, 2]) + b"\x00" * 4
    parser = FrameParser()
    received = parser.feed(frames[0].to_bytes() + false_start + wire(frames[1:]))
    assert received == frames
    assert parser.crc_failures == 1


def test_parser_bad_crc_skips_only_that_frame():
    frames = make_frames(3)
    bad = bytearray(frames[1].to_bytes())
    bad[-1] ^= 0x01
    parser = FrameParser()
    received = parser.feed(frames[0].to_bytes() + bytes(bad) + frames[2].to_bytes())
    assert received == [frames[0], frames[2]]
    assert parser.crc_failures == 1
    assert parser.bytes_discarded == len(bad)
    assert parser.sequence_gaps == 1
    assert parser.frames_lost == 1


def test_parser_bad_crc_does_not_swallow_next_frame():
    good = Frame(FrameType.ECG, 1, b"good")
    # Claims 40 payload bytes, so its span covers all of the good frame behind it.
    truncated_claim = START_MARKER + bytes([40, 0, 2]) + b"\x00" * 4 + b"abc"
    parser = FrameParser()
    received = parser.feed(truncated_claim + good.to_bytes() + bytes(40))
    assert received == [good]
    assert parser.crc_failures == 1


def test_parser_oversized_length_resyncs():
    good = make_frames(2)
    oversized = START_MARKER + (MAX_PAYLOAD_SIZE + 1).to_bytes(2, "little") + b"\x02"
    parser = FrameParser()
    received = parser.feed(good[0].to_bytes() + oversized + good[1].to_bytes())
    assert received == good
    assert parser.oversized == 1
    assert parser.crc_failures == 0
    assert parser.bytes_discarded == len(oversized)


def test_parser_truncated_frame_stays_pending():
    frames = make_frames(2)
    data = wire(frames)
    cut = len(data) - 3
    parser = FrameParser()
    assert parser.feed(data[:cut]) == [frames[0]]
    assert parser.pending_bytes == len(frames[1].to_bytes()) - 3
    assert parser.frames_ok == 1
    assert parser.feed(data[cut:]) == [frames[1]]
    assert parser.pending_bytes == 0


def test_parser_keeps_trailing_marker_byte():
    frame = Frame(FrameType.ECG, 0, b"abc")
    parser = FrameParser()
    assert parser.feed(b"\x01\x02" + frame.to_bytes()[:1]) == []
    assert parser.pending_bytes == 1
    assert parser.bytes_discarded == 2
    assert parser.feed(frame.to_bytes()[1:]) == [frame]


def test_parser_counts_sequence_gap():
    frames = make_frames(6)
    parser = FrameParser()
    parser.feed(wire(frames[:2]) + wire(frames[5:]))
    assert parser.sequence_gaps == 1
    assert parser.frames_lost == 3


def test_parser_sequence_wrap_is_not_a_gap():
    frames = make_frames(2, start_sequence=2**32 - 2) + make_frames(1)
    parser = FrameParser()
    assert len(parser.feed(wire(frames))) == 3
    assert parser.sequence_gaps == 0


def test_parser_sequence_restart_counts_gap_not_loss():
    parser = FrameParser()
    parser.feed(wire(make_frames(5, start_sequence=100)) + wire(make_frames(2)))
    assert parser.sequence_gaps == 1
    assert parser.frames_lost == 0


def test_parser_rate_limits_crc_warnings(caplog):
    bad = bytearray(Frame(FrameType.ECG, 0, b"abc").to_bytes())
    bad[-1] ^= 0xFF
    parser = FrameParser()
    with caplog.at_level(logging.WARNING, logger="protocol.framing"):
        parser.feed(bytes(bad) * 100)
    crc_lines = [r for r in caplog.records if "CRC mismatch" in r.getMessage()]
    assert parser.crc_failures == 100
    assert len(crc_lines) == 1


def test_parser_overhead_constant():
    assert len(Frame(FrameType.ECG, 0, b"").to_bytes()) == FRAME_OVERHEAD
