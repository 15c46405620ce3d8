"""Serial frame format of the bedside sensor board.

A frame on the wire, all integers little-endian::

    A5 5A | length u16 | type u8 | sequence u32 | payload (length bytes) | CRC-32 u32

The CRC is ``zlib.crc32`` (IEEE 802.3) over length, type, sequence and payload, so the
start marker is not covered. This module is pure: bytes in, frames out.
"""

from __future__ import annotations

import logging
import struct
import time
import zlib
from dataclasses import dataclass
from enum import IntEnum

from protocol.errors import ProtocolError

logger = logging.getLogger(__name__)

START_MARKER = b"\xa5\x5a"
# length u16, type u8, sequence u32: the part of the header that the CRC covers.
_HEADER = struct.Struct("<HBI")
_CRC = struct.Struct("<I")
HEADER_SIZE = len(START_MARKER) + _HEADER.size
CRC_SIZE = _CRC.size
FRAME_OVERHEAD = HEADER_SIZE + CRC_SIZE

# Bounds the parser's buffer and the wait for a frame that a false start marker in
# line noise announces, while leaving room for 2 s of 1 kHz ECG in one frame.
MAX_PAYLOAD_SIZE = 4096

SEQUENCE_MODULUS = 2**32
# Forward distances below half the counter range count as lost frames, and larger
# ones as a backwards jump, as after a board restart.
_MAX_FORWARD_GAP = SEQUENCE_MODULUS // 2

# At most one warning per kind of line error in this many seconds, so a burst of noise
# costs a few log lines and not one per discarded byte.
LOG_INTERVAL_S = 5.0


class FrameType(IntEnum):
    """Frame type byte."""

    HELLO = 1
    ECG = 2
    NUMERICS = 3
    STATUS = 4


@dataclass(frozen=True)
class Frame:
    """One frame: its type, the board's frame counter and the raw payload.

    ``type`` is a ``FrameType`` for known types. The parser passes frames of unknown
    types through as a plain ``int`` so that a receiver can skip what it does not
    understand instead of losing sync.
    """

    type: int
    sequence: int
    payload: bytes

    def __post_init__(self) -> None:
        if not 0 <= self.type <= 0xFF:
            raise ProtocolError("type", f"must be 0..255, got {self.type}")
        if not 0 <= self.sequence < SEQUENCE_MODULUS:
            raise ProtocolError("sequence", f"must be 0..2**32-1, got {self.sequence}")
        if len(self.payload) > MAX_PAYLOAD_SIZE:
            raise ProtocolError(
                "length",
                f"payload of {len(self.payload)} bytes exceeds {MAX_PAYLOAD_SIZE}",
            )

    def to_bytes(self) -> bytes:
        """Encode the frame with start marker and CRC."""
        body = _HEADER.pack(len(self.payload), self.type, self.sequence) + self.payload
        return START_MARKER + body + _CRC.pack(zlib.crc32(body))


def encode_frame(frame_type: int, sequence: int, payload: bytes) -> bytes:
    """Encode one frame; ``sequence`` is taken modulo 2**32 so callers may count up."""
    frame = Frame(frame_type, sequence % SEQUENCE_MODULUS, bytes(payload))
    return frame.to_bytes()


class _RateLimitedWarning:
    """Log a repeating line error at most once per interval, with the count since."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S) -> None:
        self._interval_s = interval_s
        self._last_logged: float | None = None
        self._suppressed = 0

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if self._last_logged is not None and now - self._last_logged < self._interval_s:
            self._suppressed += 1
            return
        if self._suppressed:
            message += " (%d more since the last warning)"
            args = (*args, self._suppressed)
        logger.warning(message, *args)
        self._last_logged = now
        self._suppressed = 0


class FrameParser:
    """Reassemble frames from a byte stream with arbitrary read boundaries.

    The parser scans for the start marker, waits for the full frame and checks its
    CRC. No field of a frame with a bad CRC or an oversized length is trusted. The
    parser skips only its start marker and scans again from the next byte, so a good
    frame that starts inside the bad one's span is still found.

    Counters: ``frames_ok`` (frames returned), ``crc_failures``, ``oversized``
    (declared payload length above ``MAX_PAYLOAD_SIZE``), ``bytes_discarded`` (bytes
    skipped while resynchronising, start markers of rejected frames included),
    ``sequence_gaps`` (times the sequence did not follow the previous good frame) and
    ``frames_lost`` (frames missing in forward gaps).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._expected_sequence: int | None = None
        self._line_error_warning = _RateLimitedWarning()
        self._gap_warning = _RateLimitedWarning()
        self.frames_ok = 0
        self.crc_failures = 0
        self.oversized = 0
        self.bytes_discarded = 0
        self.sequence_gaps = 0
        self.frames_lost = 0

    @property
    def pending_bytes(self) -> int:
        """Bytes buffered but not yet part of a complete frame."""
        return len(self._buffer)

    def feed(self, data: bytes) -> list[Frame]:
        """Add received bytes and return the frames completed by them, in order."""
        self._buffer += data
        frames = []
        while (frame := self._next_frame()) is not None:
            frames.append(frame)
        return frames

    def _next_frame(self) -> Frame | None:
        while self._align_to_marker():
            if len(self._buffer) < HEADER_SIZE:
                return None
            length, frame_type, sequence = _HEADER.unpack_from(
                self._buffer, len(START_MARKER)
            )
            if length > MAX_PAYLOAD_SIZE:
                self._reject_oversized(length)
                continue
            if len(self._buffer) < FRAME_OVERHEAD + length:
                return None
            if not self._crc_matches(length, sequence):
                continue
            return self._take_frame(frame_type, sequence, length)
        return None

    def _align_to_marker(self) -> bool:
        """Drop bytes before the next start marker; return whether one is buffered."""
        index = self._buffer.find(START_MARKER)
        if index >= 0:
            self._discard(index)
            return True
        # A trailing first marker byte may be completed by the next read.
        keep = 1 if self._buffer.endswith(START_MARKER[:1]) else 0
        self._discard(len(self._buffer) - keep)
        return False

    def _discard(self, count: int) -> None:
        if count:
            del self._buffer[:count]
            self.bytes_discarded += count

    def _reject_oversized(self, length: int) -> None:
        self.oversized += 1
        self._line_error_warning.warn(
            "Frame length %d exceeds %d bytes; resynchronising",
            length,
            MAX_PAYLOAD_SIZE,
        )
        self._discard(len(START_MARKER))

    def _crc_matches(self, length: int, sequence: int) -> bool:
        """Check the CRC of the buffered frame, skipping its marker if it fails."""
        crc_offset = HEADER_SIZE + length
        computed = zlib.crc32(self._buffer[len(START_MARKER) : crc_offset])
        (received,) = _CRC.unpack_from(self._buffer, crc_offset)
        if computed == received:
            return True
        self.crc_failures += 1
        self._line_error_warning.warn(
            "CRC mismatch in frame claiming sequence %d (computed %08x, received "
            "%08x); resynchronising",
            sequence,
            computed,
            received,
        )
        self._discard(len(START_MARKER))
        return False

    def _take_frame(self, frame_type: int, sequence: int, length: int) -> Frame:
        payload = bytes(self._buffer[HEADER_SIZE : HEADER_SIZE + length])
        del self._buffer[: FRAME_OVERHEAD + length]
        self._track_sequence(sequence)
        self.frames_ok += 1
        return Frame(_known_type(frame_type), sequence, payload)

    def _track_sequence(self, sequence: int) -> None:
        expected = self._expected_sequence
        self._expected_sequence = (sequence + 1) % SEQUENCE_MODULUS
        if expected is None or sequence == expected:
            return
        self.sequence_gaps += 1
        forward = (sequence - expected) % SEQUENCE_MODULUS
        if forward < _MAX_FORWARD_GAP:
            self.frames_lost += forward
            self._gap_warning.warn(
                "Sequence gap: expected %d, got %d (%d frames lost)",
                expected,
                sequence,
                forward,
            )
        else:
            self._gap_warning.warn(
                "Sequence went back from %d to %d, as after a board restart",
                expected,
                sequence,
            )


def _known_type(frame_type: int) -> int:
    try:
        return FrameType(frame_type)
    except ValueError:
        return frame_type
