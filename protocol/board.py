"""Payloads of the serial board's frames: HELLO, ECG, NUMERICS and STATUS.

Each payload is a frozen value with ``to_bytes()`` and ``from_bytes()``. The
constructor checks ranges, so a decoded payload is as valid as one built in code.
Every check raises ``ProtocolError`` naming the field. All integers and floats are
little-endian, floats are IEEE 754 binary32.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, fields
from typing import ClassVar

from protocol.codes import VitalSign
from protocol.errors import ProtocolError
from protocol.framing import MAX_PAYLOAD_SIZE, Frame, FrameType

# HELLO string limits in UTF-8 bytes; each string goes on the wire as u8 length + bytes.
MAX_BOARD_ID_BYTES = 64
MAX_FIRMWARE_VERSION_BYTES = 32
MAX_LEAD_NAME_BYTES = 16

# Diagnostic ECG needs at least 125 Hz, and no board of this kind samples above 1 kHz.
MIN_SAMPLE_RATE_HZ = 125.0
MAX_SAMPLE_RATE_HZ = 1000.0
# Coarser than 1 mV per count cannot resolve an ECG waveform, so a larger scale is a
# board configuration error.
MAX_MICROVOLTS_PER_COUNT = 1000.0

_ECG_HEADER = struct.Struct("<QH")
MAX_ECG_SAMPLES = (MAX_PAYLOAD_SIZE - _ECG_HEADER.size) // 2
INT16_MIN, INT16_MAX = -(2**15), 2**15 - 1
UINT64_MAX = 2**64 - 1

_FLOAT32 = struct.Struct("<f")
_UINT8 = struct.Struct("<B")
_UINT16 = struct.Struct("<H")
_UINT64 = struct.Struct("<Q")

# STATUS battery byte for "no battery or level unknown", as on mains-powered boards.
BATTERY_UNKNOWN = 0xFF
STATUS_LEADS_OFF = 0x01
STATUS_BATTERY_LOW = 0x02
_STATUS_KNOWN_FLAGS = STATUS_LEADS_OFF | STATUS_BATTERY_LOW


class _PayloadReader:
    """Read fields from a payload in order, naming the field that runs short."""

    def __init__(self, payload: bytes) -> None:
        self._payload = bytes(payload)
        self._offset = 0

    def take(self, field: str, size: int) -> bytes:
        remaining = len(self._payload) - self._offset
        if remaining < size:
            raise ProtocolError(
                field, f"payload too short: needs {size} bytes, {remaining} left"
            )
        chunk = self._payload[self._offset : self._offset + size]
        self._offset += size
        return chunk

    def take_struct(self, field: str, layout: struct.Struct) -> tuple:
        return layout.unpack(self.take(field, layout.size))

    def take_string(self, field: str) -> str:
        (size,) = self.take_struct(field, _UINT8)
        raw = self.take(field, size)
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise ProtocolError(field, f"invalid UTF-8: {error.reason}") from None

    def finish(self) -> None:
        extra = len(self._payload) - self._offset
        if extra:
            raise ProtocolError("payload", f"{extra} unexpected bytes after last field")


def _encode_string(field: str, value: str, max_bytes: int) -> bytes:
    raw = value.encode("utf-8")
    if not raw:
        raise ProtocolError(field, "must not be empty")
    if len(raw) > max_bytes:
        raise ProtocolError(field, f"{len(raw)} UTF-8 bytes exceeds {max_bytes}")
    return _UINT8.pack(len(raw)) + raw


def _check_float_range(field: str, value: float, low: float, high: float) -> None:
    # NaN fails both comparisons, so it is rejected here too.
    if not low <= value <= high:
        raise ProtocolError(field, f"must be in {low:g}..{high:g}, got {value!r}")


@dataclass(frozen=True)
class HelloPayload:
    """Board identity and the ECG format; sent first and repeated every few seconds."""

    FRAME_TYPE: ClassVar[FrameType] = FrameType.HELLO

    board_id: str
    firmware_version: str
    sample_rate_hz: float
    microvolts_per_count: float
    lead: str

    def __post_init__(self) -> None:
        self._encode_strings()
        _check_float_range(
            "sample_rate_hz",
            self.sample_rate_hz,
            MIN_SAMPLE_RATE_HZ,
            MAX_SAMPLE_RATE_HZ,
        )
        if not 0.0 < self.microvolts_per_count <= MAX_MICROVOLTS_PER_COUNT:
            raise ProtocolError(
                "microvolts_per_count",
                f"must be > 0 and <= {MAX_MICROVOLTS_PER_COUNT:g}, "
                f"got {self.microvolts_per_count!r}",
            )

    def _encode_strings(self) -> tuple[bytes, bytes, bytes]:
        return (
            _encode_string("board_id", self.board_id, MAX_BOARD_ID_BYTES),
            _encode_string(
                "firmware_version", self.firmware_version, MAX_FIRMWARE_VERSION_BYTES
            ),
            _encode_string("lead", self.lead, MAX_LEAD_NAME_BYTES),
        )

    def to_bytes(self) -> bytes:
        """Encode as board id, firmware version, sample rate, scale, lead name."""
        board_id, firmware_version, lead = self._encode_strings()
        return b"".join(
            (
                board_id,
                firmware_version,
                _FLOAT32.pack(self.sample_rate_hz),
                _FLOAT32.pack(self.microvolts_per_count),
                lead,
            )
        )

    @classmethod
    def from_bytes(cls, payload: bytes) -> HelloPayload:
        """Decode and range-check a HELLO payload."""
        reader = _PayloadReader(payload)
        board_id = reader.take_string("board_id")
        firmware_version = reader.take_string("firmware_version")
        (sample_rate_hz,) = reader.take_struct("sample_rate_hz", _FLOAT32)
        (microvolts_per_count,) = reader.take_struct("microvolts_per_count", _FLOAT32)
        lead = reader.take_string("lead")
        reader.finish()
        return cls(
            board_id, firmware_version, sample_rate_hz, microvolts_per_count, lead
        )


@dataclass(frozen=True)
class EcgPayload:
    """A block of consecutive ECG samples in signed ADC counts, baseline removed.

    ``first_sample_index`` counts samples since the board started streaming, so a
    receiver can place each block in time and see lost samples as a jump.
    """

    FRAME_TYPE: ClassVar[FrameType] = FrameType.ECG

    first_sample_index: int
    samples: tuple[int, ...]

    def __post_init__(self) -> None:
        samples = tuple(int(sample) for sample in self.samples)
        object.__setattr__(self, "samples", samples)
        if not 0 <= self.first_sample_index <= UINT64_MAX:
            raise ProtocolError(
                "first_sample_index",
                f"must be 0..2**64-1, got {self.first_sample_index}",
            )
        if not 1 <= len(samples) <= MAX_ECG_SAMPLES:
            raise ProtocolError(
                "count", f"must be 1..{MAX_ECG_SAMPLES}, got {len(samples)}"
            )
        if min(samples) < INT16_MIN or max(samples) > INT16_MAX:
            raise ProtocolError(
                "samples",
                f"values must be int16, got range {min(samples)}..{max(samples)}",
            )

    @property
    def next_sample_index(self) -> int:
        """Index of the sample that follows this block."""
        return self.first_sample_index + len(self.samples)

    def to_millivolts(self, microvolts_per_count: float) -> list[float]:
        """Convert the counts with the HELLO scale."""
        scale_mv = microvolts_per_count / 1000.0
        return [sample * scale_mv for sample in self.samples]

    def to_bytes(self) -> bytes:
        """Encode as first sample index u64, count u16, then count int16 samples."""
        count = len(self.samples)
        header = _ECG_HEADER.pack(self.first_sample_index, count)
        return header + struct.pack(f"<{count}h", *self.samples)

    @classmethod
    def from_bytes(cls, payload: bytes) -> EcgPayload:
        """Decode and range-check an ECG payload."""
        reader = _PayloadReader(payload)
        (first_sample_index,) = reader.take_struct("first_sample_index", _UINT64)
        (count,) = reader.take_struct("count", _UINT16)
        if not 1 <= count <= MAX_ECG_SAMPLES:
            raise ProtocolError("count", f"must be 1..{MAX_ECG_SAMPLES}, got {count}")
        samples = struct.unpack(f"<{count}h", reader.take("samples", 2 * count))
        reader.finish()
        return cls(first_sample_index, samples)


@dataclass(frozen=True)
class NumericsPayload:
    """Optional vital signs; ``None`` means the board has no current value.

    On the wire: a u8 presence mask (bit i set when field i has a value, in the field
    order below), then all seven fields as float32 with NaN for absent values.
    """

    FRAME_TYPE: ClassVar[FrameType] = FrameType.NUMERICS

    spo2_percent: float | None = None
    pulse_rate_bpm: float | None = None
    respiration_rate_bpm: float | None = None
    nibp_systolic_mmhg: float | None = None
    nibp_diastolic_mmhg: float | None = None
    nibp_mean_mmhg: float | None = None
    temperature_celsius: float | None = None

    # The vital sign of each field. Its plausible range is shared with the rest of the
    # system, so the board and central accept the same values.
    VITAL_SIGNS: ClassVar[dict[str, VitalSign]] = {
        "spo2_percent": VitalSign.SPO2,
        "pulse_rate_bpm": VitalSign.PULSE_RATE,
        "respiration_rate_bpm": VitalSign.RESPIRATION_RATE,
        "nibp_systolic_mmhg": VitalSign.SYSTOLIC_BP,
        "nibp_diastolic_mmhg": VitalSign.DIASTOLIC_BP,
        "nibp_mean_mmhg": VitalSign.MEAN_BP,
        "temperature_celsius": VitalSign.TEMPERATURE,
    }

    def __post_init__(self) -> None:
        for name, sign in self.VITAL_SIGNS.items():
            value = getattr(self, name)
            if value is not None:
                code = sign.value
                _check_float_range(name, value, code.minimum, code.maximum)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        """Field names in wire order; bit i of the presence mask is field i."""
        return tuple(field.name for field in fields(cls))

    def to_bytes(self) -> bytes:
        """Encode as presence mask u8, then seven float32 values."""
        mask = 0
        values = []
        for bit, name in enumerate(self.field_names()):
            value = getattr(self, name)
            if value is not None:
                mask |= 1 << bit
            values.append(math.nan if value is None else value)
        return _UINT8.pack(mask) + struct.pack(f"<{len(values)}f", *values)

    @classmethod
    def from_bytes(cls, payload: bytes) -> NumericsPayload:
        """Decode and check a NUMERICS payload against its presence mask."""
        reader = _PayloadReader(payload)
        (mask,) = reader.take_struct("presence", _UINT8)
        names = cls.field_names()
        if mask >> len(names):
            raise ProtocolError("presence", f"reserved bits set in 0x{mask:02x}")
        values = {}
        for bit, name in enumerate(names):
            (value,) = reader.take_struct(name, _FLOAT32)
            values[name] = _present_value(name, value, bool(mask & (1 << bit)))
        reader.finish()
        return cls(**values)


def _present_value(name: str, value: float, present: bool) -> float | None:
    if present and math.isnan(value):
        raise ProtocolError(name, "presence bit is set but the value is NaN")
    if not present and not math.isnan(value):
        raise ProtocolError(name, f"presence bit is clear but the value is {value!r}")
    return value if present else None


@dataclass(frozen=True)
class StatusPayload:
    """Board condition: electrode contact and battery."""

    FRAME_TYPE: ClassVar[FrameType] = FrameType.STATUS

    leads_off: bool = False
    battery_low: bool = False
    # None when the board has no battery or cannot measure it.
    battery_percent: int | None = None

    def __post_init__(self) -> None:
        percent = self.battery_percent
        if percent is not None and not 0 <= percent <= 100:
            raise ProtocolError("battery_percent", f"must be 0..100, got {percent}")

    def to_bytes(self) -> bytes:
        """Encode as flags u8, battery percent u8 (0xFF when unknown)."""
        flags = (STATUS_LEADS_OFF if self.leads_off else 0) | (
            STATUS_BATTERY_LOW if self.battery_low else 0
        )
        percent = (
            BATTERY_UNKNOWN if self.battery_percent is None else self.battery_percent
        )
        return bytes((flags, percent))

    @classmethod
    def from_bytes(cls, payload: bytes) -> StatusPayload:
        """Decode a STATUS payload; reserved flag bits must be zero."""
        reader = _PayloadReader(payload)
        (flags,) = reader.take_struct("flags", _UINT8)
        (percent,) = reader.take_struct("battery_percent", _UINT8)
        reader.finish()
        if flags & ~_STATUS_KNOWN_FLAGS:
            raise ProtocolError("flags", f"reserved bits set in 0x{flags:02x}")
        return cls(
            leads_off=bool(flags & STATUS_LEADS_OFF),
            battery_low=bool(flags & STATUS_BATTERY_LOW),
            battery_percent=None if percent == BATTERY_UNKNOWN else percent,
        )


BoardPayload = HelloPayload | EcgPayload | NumericsPayload | StatusPayload

PAYLOAD_TYPES: dict[FrameType, type[BoardPayload]] = {
    FrameType.HELLO: HelloPayload,
    FrameType.ECG: EcgPayload,
    FrameType.NUMERICS: NumericsPayload,
    FrameType.STATUS: StatusPayload,
}


def decode_payload(frame: Frame) -> BoardPayload:
    """Decode a frame's payload by its type; an unknown type raises ProtocolError."""
    payload_type = PAYLOAD_TYPES.get(frame.type)
    if payload_type is None:
        raise ProtocolError("type", f"unknown frame type {frame.type}")
    return payload_type.from_bytes(frame.payload)


def encode_payload_frame(payload: BoardPayload, sequence: int) -> Frame:
    """Wrap a payload in a frame with the given board sequence number."""
    return Frame(payload.FRAME_TYPE, sequence, payload.to_bytes())
