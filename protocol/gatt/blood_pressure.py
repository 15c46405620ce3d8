"""Blood Pressure Measurement (0x2A35) of the Bluetooth SIG Blood Pressure Service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntFlag

from protocol.errors import ProtocolError
from protocol.gatt.values import (
    SFLOAT,
    UINT8_MAX,
    ValueReader,
    check_decimal,
    check_flags,
    check_int,
    encode_date_time,
    pack_sfloat,
    pack_uint,
    sig_uuid,
)

BLOOD_PRESSURE_MEASUREMENT_UUID = sig_uuid(0x2A35)
MMHG_PER_KPA = 7.500615758
# User ID 0xFF means the sensor does not know the user.
UNKNOWN_USER = 0xFF


class BloodPressureFlags(IntFlag):
    """Flags of Blood Pressure Measurement; bits 5 to 7 are reserved.

    NOTE: written to Blood Pressure Service 1.0. A later revision that assigns bits 5
    to 7 would have its values rejected here as malformed.
    """

    UNITS_KPA = 0x01
    TIME_STAMP_PRESENT = 0x02
    PULSE_RATE_PRESENT = 0x04
    USER_ID_PRESENT = 0x08
    MEASUREMENT_STATUS_PRESENT = 0x10


class BloodPressureStatus(IntFlag):
    """Measurement Status field; bits 6 to 15 are reserved.

    Bits 3 and 4 form the pulse rate range field, in which both set is reserved.
    """

    BODY_MOVEMENT_DETECTED = 0x0001
    CUFF_TOO_LOOSE = 0x0002
    IRREGULAR_PULSE_DETECTED = 0x0004
    PULSE_RATE_EXCEEDS_UPPER_LIMIT = 0x0008
    PULSE_RATE_BELOW_LOWER_LIMIT = 0x0010
    IMPROPER_MEASUREMENT_POSITION = 0x0020


_PULSE_RATE_RANGE = (
    BloodPressureStatus.PULSE_RATE_EXCEEDS_UPPER_LIMIT
    | BloodPressureStatus.PULSE_RATE_BELOW_LOWER_LIMIT
)


def _check_status(raw: int) -> None:
    check_flags("measurement_status", raw, sum(BloodPressureStatus))
    if raw & _PULSE_RATE_RANGE == _PULSE_RATE_RANGE:
        raise ProtocolError("measurement_status", "reserved pulse rate range value 3")


@dataclass(frozen=True, kw_only=True)
class BloodPressureMeasurement:
    """Blood Pressure Measurement (0x2A35): pressures in mmHg or in kPa."""

    systolic: float | None
    diastolic: float | None
    mean_arterial: float | None
    in_kpa: bool = False
    # Time on the sensor's own clock, without a time zone.
    time_stamp: datetime | None = None
    pulse_rate_bpm: float | None = None
    user_id: int | None = None
    measurement_status: BloodPressureStatus | None = None

    def __post_init__(self) -> None:
        for name in ("systolic", "diastolic", "mean_arterial", "pulse_rate_bpm"):
            check_decimal(name, getattr(self, name), SFLOAT)
        if self.user_id is not None:
            check_int("user_id", self.user_id, 0, UINT8_MAX)
        if self.measurement_status is not None:
            _check_status(self.measurement_status)

    def pressures_mmhg(self) -> tuple[float | None, float | None, float | None]:
        """Return systolic, diastolic and mean arterial pressure in mmHg."""
        scale = MMHG_PER_KPA if self.in_kpa else 1.0
        values = (self.systolic, self.diastolic, self.mean_arterial)
        return tuple(None if v is None else v * scale for v in values)  # type: ignore[return-value]

    @property
    def flags(self) -> BloodPressureFlags:
        flags = BloodPressureFlags(0)
        if self.in_kpa:
            flags |= BloodPressureFlags.UNITS_KPA
        if self.time_stamp is not None:
            flags |= BloodPressureFlags.TIME_STAMP_PRESENT
        if self.pulse_rate_bpm is not None:
            flags |= BloodPressureFlags.PULSE_RATE_PRESENT
        if self.user_id is not None:
            flags |= BloodPressureFlags.USER_ID_PRESENT
        if self.measurement_status is not None:
            flags |= BloodPressureFlags.MEASUREMENT_STATUS_PRESENT
        return flags

    def to_bytes(self) -> bytes:
        out = pack_uint(self.flags, 1)
        out += pack_sfloat(self.systolic, "systolic")
        out += pack_sfloat(self.diastolic, "diastolic")
        out += pack_sfloat(self.mean_arterial, "mean_arterial")
        if self.time_stamp is not None:
            out += encode_date_time(self.time_stamp, "time_stamp")
        if self.pulse_rate_bpm is not None:
            out += pack_sfloat(self.pulse_rate_bpm, "pulse_rate_bpm")
        if self.user_id is not None:
            out += pack_uint(self.user_id, 1)
        if self.measurement_status is not None:
            out += pack_uint(self.measurement_status, 2)
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> BloodPressureMeasurement:
        reader = ValueReader(data, "blood_pressure_measurement")
        raw_flags = reader.uint("flags", 1)
        check_flags("flags", raw_flags, sum(BloodPressureFlags))
        flags = BloodPressureFlags(raw_flags)
        systolic = reader.sfloat("systolic")
        diastolic = reader.sfloat("diastolic")
        mean_arterial = reader.sfloat("mean_arterial")
        time_stamp = pulse_rate = user_id = status = None
        if flags & BloodPressureFlags.TIME_STAMP_PRESENT:
            time_stamp = reader.date_time("time_stamp")
        if flags & BloodPressureFlags.PULSE_RATE_PRESENT:
            pulse_rate = reader.sfloat("pulse_rate_bpm")
        if flags & BloodPressureFlags.USER_ID_PRESENT:
            user_id = reader.uint("user_id", 1)
        if flags & BloodPressureFlags.MEASUREMENT_STATUS_PRESENT:
            raw_status = reader.uint("measurement_status", 2)
            _check_status(raw_status)
            status = BloodPressureStatus(raw_status)
        reader.finish()
        return cls(
            systolic=systolic,
            diastolic=diastolic,
            mean_arterial=mean_arterial,
            in_kpa=bool(flags & BloodPressureFlags.UNITS_KPA),
            time_stamp=time_stamp,
            pulse_rate_bpm=pulse_rate,
            user_id=user_id,
            measurement_status=status,
        )
