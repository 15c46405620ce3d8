"""Field types shared by the characteristics: IEEE 11073 SFLOAT and FLOAT, Date Time.

IEEE 11073-20601 special values (NaN, NRes, +INF, -INF, reserved) decode to ``None``,
meaning the sensor has no valid value, never to a number.
"""

from __future__ import annotations

import math
import struct
from datetime import datetime
from typing import NamedTuple

from protocol.errors import ProtocolError

# Core Specification Vol 3 Part F 3.2.9: an attribute value is at most 512 bytes.
MAX_ATTRIBUTE_VALUE_BYTES = 512
UINT8_MAX = 2**8 - 1
UINT16_MAX = 2**16 - 1
UINT64_MAX = 2**64 - 1


def sig_uuid(short: int) -> str:
    """Expand a 16-bit SIG-assigned number to the 128-bit UUID string bleak uses."""
    return f"0000{short:04x}-0000-1000-8000-00805f9b34fb"


class _DecimalFormat(NamedTuple):
    """An IEEE 11073-20601 decimal format: value = mantissa * 10**exponent."""

    name: str
    mantissa_bits: int
    exponent_bits: int
    # Mantissas beyond +-mantissa_max are reserved for the special values.
    mantissa_max: int
    nan: int
    positive_infinity: int
    negative_infinity: int

    @property
    def exponent_range(self) -> range:
        half = 1 << (self.exponent_bits - 1)
        return range(-half, half)

    @property
    def largest(self) -> float:
        return float(self.mantissa_max * 10 ** self.exponent_range[-1])


SFLOAT = _DecimalFormat("SFLOAT", 12, 4, 2045, 0x07FF, 0x07FE, 0x0802)
FLOAT = _DecimalFormat("FLOAT", 24, 8, 2**23 - 3, 0x007FFFFF, 0x007FFFFE, 0x00800002)


def _signed(raw: int, bits: int) -> int:
    return raw - (1 << bits) if raw & (1 << (bits - 1)) else raw


def decode_decimal(raw: int, fmt: _DecimalFormat) -> float | None:
    """Decode an SFLOAT or FLOAT; None for NaN, NRes, +INF, -INF and reserved values."""
    mantissa = _signed(raw & ((1 << fmt.mantissa_bits) - 1), fmt.mantissa_bits)
    exponent = _signed(raw >> fmt.mantissa_bits, fmt.exponent_bits)
    if abs(mantissa) > fmt.mantissa_max:
        return None
    if exponent >= 0:
        return float(mantissa * 10**exponent)
    # Dividing by an exact power of ten gives the float nearest the decimal value,
    # where multiplying by 0.1 would not (985 * 0.1 != 98.5).
    return mantissa / 10**-exponent


def encode_decimal(value: float | None, fmt: _DecimalFormat, field: str) -> int:
    """Encode with exponent 0 where the value is whole and fits, else the finest
    exponent that fits; None and NaN become NaN."""
    if value is None or math.isnan(value):
        return fmt.nan
    if math.isinf(value):
        return fmt.positive_infinity if value > 0 else fmt.negative_infinity
    for exponent in fmt.exponent_range:
        if exponent < 0:
            mantissa = round(value * 10**-exponent)
        else:
            mantissa = round(value / 10**exponent)
        if abs(mantissa) <= fmt.mantissa_max:
            break
    else:
        raise ProtocolError(field, f"{value!r} does not fit an IEEE 11073 {fmt.name}")
    while mantissa and mantissa % 10 == 0 and exponent < 0:
        mantissa, exponent = mantissa // 10, exponent + 1
    if mantissa == 0:
        exponent = 0
    mantissa_mask = (1 << fmt.mantissa_bits) - 1
    exponent_mask = (1 << fmt.exponent_bits) - 1
    return ((exponent & exponent_mask) << fmt.mantissa_bits) | (mantissa & mantissa_mask)


def check_decimal(field: str, value: float | None, fmt: _DecimalFormat) -> None:
    """Reject a value that is neither None nor a finite number the format can carry."""
    if value is None:
        return
    if not math.isfinite(value) or abs(value) > fmt.largest:
        raise ProtocolError(field, f"{value!r} is not a finite IEEE 11073 {fmt.name}")


def check_int(field: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ProtocolError(field, f"must be in {low}..{high}, got {value!r}")


def check_flags(field: str, raw: int, known: int) -> None:
    if raw & ~known:
        raise ProtocolError(field, f"reserved bits set: 0x{raw & ~known:x}")


class ValueReader:
    """Read fields from a characteristic value in order, naming the field that fails."""

    def __init__(self, data: bytes, characteristic: str) -> None:
        if len(data) > MAX_ATTRIBUTE_VALUE_BYTES:
            raise ProtocolError(
                characteristic,
                f"{len(data)} bytes exceeds the {MAX_ATTRIBUTE_VALUE_BYTES}-byte limit",
            )
        self._data = bytes(data)
        self._offset = 0

    @property
    def remaining(self) -> int:
        return len(self._data) - self._offset

    def take(self, field: str, size: int) -> bytes:
        if self.remaining < size:
            raise ProtocolError(
                field, f"value too short: needs {size} bytes, {self.remaining} left"
            )
        chunk = self._data[self._offset : self._offset + size]
        self._offset += size
        return chunk

    def uint(self, field: str, size: int) -> int:
        return int.from_bytes(self.take(field, size), "little")

    def sfloat(self, field: str) -> float | None:
        return decode_decimal(self.uint(field, 2), SFLOAT)

    def float32(self, field: str) -> float | None:
        return decode_decimal(self.uint(field, 4), FLOAT)

    def date_time(self, field: str) -> datetime | None:
        return decode_date_time(self.take(field, _DATE_TIME.size), field)

    def finish(self) -> None:
        if self.remaining:
            raise ProtocolError("value", f"{self.remaining} unexpected bytes after last field")


def pack_uint(value: int, size: int) -> bytes:
    return value.to_bytes(size, "little")


def pack_sfloat(value: float | None, field: str) -> bytes:
    return pack_uint(encode_decimal(value, SFLOAT, field), 2)


def pack_float32(value: float | None, field: str) -> bytes:
    return pack_uint(encode_decimal(value, FLOAT, field), 4)


# Date Time (0x2A08): year u16, month, day, hours, minutes, seconds.
_DATE_TIME = struct.Struct("<HBBBBB")
MIN_YEAR, MAX_YEAR = 1582, 9999


def decode_date_time(raw: bytes, field: str) -> datetime | None:
    """Decode a Date Time; None when the sensor marks year, month or day unknown (0)."""
    year, month, day, hours, minutes, seconds = _DATE_TIME.unpack(raw)
    if year == 0 or month == 0 or day == 0:
        return None
    check_int(f"{field}.year", year, MIN_YEAR, MAX_YEAR)
    try:
        return datetime(year, month, day, hours, minutes, seconds)
    except ValueError as error:
        raise ProtocolError(field, f"invalid date or time: {error}") from None


def encode_date_time(value: datetime | None, field: str) -> bytes:
    """Encode a naive sensor-clock time; None becomes the all-unknown Date Time."""
    if value is None:
        return bytes(_DATE_TIME.size)
    check_int(f"{field}.year", value.year, MIN_YEAR, MAX_YEAR)
    return _DATE_TIME.pack(
        value.year, value.month, value.day, value.hour, value.minute, value.second
    )


