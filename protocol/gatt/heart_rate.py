"""Heart Rate Measurement (0x2A37) of the Bluetooth SIG Heart Rate Service."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntFlag

from protocol.errors import ProtocolError
from protocol.gatt.values import (
    MAX_ATTRIBUTE_VALUE_BYTES,
    UINT8_MAX,
    UINT16_MAX,
    ValueReader,
    check_flags,
    check_int,
    pack_uint,
    sig_uuid,
)


class HeartRateFlags(IntFlag):
    """Flags of Heart Rate Measurement; bits 5 to 7 are reserved."""

    RATE_UINT16 = 0x01
    SENSOR_CONTACT_DETECTED = 0x02
    SENSOR_CONTACT_SUPPORTED = 0x04
    ENERGY_EXPENDED_PRESENT = 0x08
    RR_INTERVALS_PRESENT = 0x10


HEART_RATE_MEASUREMENT_UUID = sig_uuid(0x2A37)
# RR intervals that fit one maximum-size value after flags, rate and energy.
MAX_RR_INTERVALS = (MAX_ATTRIBUTE_VALUE_BYTES - 5) // 2
RR_INTERVAL_UNITS_PER_S = 1024


@dataclass(frozen=True)
class HeartRateMeasurement:
    """Heart Rate Measurement (0x2A37)."""

    heart_rate_bpm: int
    # None when the sensor does not report skin contact.
    sensor_contact: bool | None = None
    energy_expended_kj: int | None = None
    # Beat-to-beat intervals in units of 1/1024 s, oldest first.
    rr_intervals: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        check_int("heart_rate_bpm", self.heart_rate_bpm, 0, UINT16_MAX)
        if self.energy_expended_kj is not None:
            check_int("energy_expended_kj", self.energy_expended_kj, 0, UINT16_MAX)
        if len(self.rr_intervals) > MAX_RR_INTERVALS:
            raise ProtocolError(
                "rr_intervals", f"{len(self.rr_intervals)} exceeds {MAX_RR_INTERVALS}"
            )
        for index, interval in enumerate(self.rr_intervals):
            check_int(f"rr_intervals[{index}]", interval, 0, UINT16_MAX)

    @property
    def rr_intervals_s(self) -> tuple[float, ...]:
        return tuple(value / RR_INTERVAL_UNITS_PER_S for value in self.rr_intervals)

    @property
    def flags(self) -> HeartRateFlags:
        flags = HeartRateFlags(0)
        if self.heart_rate_bpm > UINT8_MAX:
            flags |= HeartRateFlags.RATE_UINT16
        if self.sensor_contact is not None:
            flags |= HeartRateFlags.SENSOR_CONTACT_SUPPORTED
            if self.sensor_contact:
                flags |= HeartRateFlags.SENSOR_CONTACT_DETECTED
        if self.energy_expended_kj is not None:
            flags |= HeartRateFlags.ENERGY_EXPENDED_PRESENT
        if self.rr_intervals:
            flags |= HeartRateFlags.RR_INTERVALS_PRESENT
        return flags

    def to_bytes(self) -> bytes:
        flags = self.flags
        rate_size = 2 if flags & HeartRateFlags.RATE_UINT16 else 1
        out = pack_uint(flags, 1) + pack_uint(self.heart_rate_bpm, rate_size)
        if self.energy_expended_kj is not None:
            out += pack_uint(self.energy_expended_kj, 2)
        return out + b"".join(pack_uint(value, 2) for value in self.rr_intervals)

    @classmethod
    def from_bytes(cls, data: bytes) -> HeartRateMeasurement:
        reader = ValueReader(data, "heart_rate_measurement")
        raw_flags = reader.uint("flags", 1)
        check_flags("flags", raw_flags, sum(HeartRateFlags))
        flags = HeartRateFlags(raw_flags)
        rate_size = 2 if flags & HeartRateFlags.RATE_UINT16 else 1
        rate = reader.uint("heart_rate_bpm", rate_size)
        contact = None
        # With the "supported" bit clear, the "detected" bit carries no meaning.
        if flags & HeartRateFlags.SENSOR_CONTACT_SUPPORTED:
            contact = bool(flags & HeartRateFlags.SENSOR_CONTACT_DETECTED)
        energy = None
        if flags & HeartRateFlags.ENERGY_EXPENDED_PRESENT:
            energy = reader.uint("energy_expended_kj", 2)
        intervals: list[int] = []
        if flags & HeartRateFlags.RR_INTERVALS_PRESENT:
            if reader.remaining == 0:
                raise ProtocolError("rr_intervals", "flag set but no interval follows")
            while reader.remaining:
                intervals.append(reader.uint(f"rr_intervals[{len(intervals)}]", 2))
        reader.finish()
        return cls(rate, contact, energy, tuple(intervals))
