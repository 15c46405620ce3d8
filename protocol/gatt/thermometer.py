"""Temperature Measurement (0x2A1C) of the Health Thermometer Service, and Battery
Level (0x2A19) of the Battery Service."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntEnum, IntFlag

from protocol.errors import ProtocolError
from protocol.gatt.values import (
    FLOAT,
    ValueReader,
    check_decimal,
    check_flags,
    check_int,
    encode_date_time,
    pack_float32,
    pack_uint,
    sig_uuid,
)

TEMPERATURE_MEASUREMENT_UUID = sig_uuid(0x2A1C)
BATTERY_LEVEL_UUID = sig_uuid(0x2A19)


class TemperatureFlags(IntFlag):
    """Flags of Temperature Measurement; bits 3 to 7 are reserved."""

    FAHRENHEIT = 0x01
    TIME_STAMP_PRESENT = 0x02
    TEMPERATURE_TYPE_PRESENT = 0x04


class TemperatureType(IntEnum):
    """Measurement site of the temperature; 0 and 10 to 255 are reserved."""

    ARMPIT = 1
    BODY = 2
    EAR = 3
    FINGER = 4
    GASTROINTESTINAL_TRACT = 5
    MOUTH = 6
    RECTUM = 7
    TOE = 8
    TYMPANUM = 9


@dataclass(frozen=True, kw_only=True)
class TemperatureMeasurement:
    """Temperature Measurement (0x2A1C), in degrees Celsius or Fahrenheit."""

    temperature: float | None
    fahrenheit: bool = False
    # Time on the sensor's own clock, without a time zone.
    time_stamp: datetime | None = None
    temperature_type: TemperatureType | None = None

    def __post_init__(self) -> None:
        check_decimal("temperature", self.temperature, FLOAT)

    @property
    def celsius(self) -> float | None:
        if self.temperature is None or not self.fahrenheit:
            return self.temperature
        return (self.temperature - 32.0) * 5.0 / 9.0

    def to_bytes(self) -> bytes:
        flags = TemperatureFlags(0)
        if self.fahrenheit:
            flags |= TemperatureFlags.FAHRENHEIT
        if self.time_stamp is not None:
            flags |= TemperatureFlags.TIME_STAMP_PRESENT
        if self.temperature_type is not None:
            flags |= TemperatureFlags.TEMPERATURE_TYPE_PRESENT
        out = pack_uint(flags, 1) + pack_float32(self.temperature, "temperature")
        if self.time_stamp is not None:
            out += encode_date_time(self.time_stamp, "time_stamp")
        if self.temperature_type is not None:
            out += pack_uint(self.temperature_type, 1)
        return out

    @classmethod
    def from_bytes(cls, data: bytes) -> TemperatureMeasurement:
        reader = ValueReader(data, "temperature_measurement")
        raw_flags = reader.uint("flags", 1)
        check_flags("flags", raw_flags, sum(TemperatureFlags))
        flags = TemperatureFlags(raw_flags)
        temperature = reader.float32("temperature")
        time_stamp = temperature_type = None
        if flags & TemperatureFlags.TIME_STAMP_PRESENT:
            time_stamp = reader.date_time("time_stamp")
        if flags & TemperatureFlags.TEMPERATURE_TYPE_PRESENT:
            raw_type = reader.uint("temperature_type", 1)
            try:
                temperature_type = TemperatureType(raw_type)
            except ValueError:
                raise ProtocolError(
                    "temperature_type", f"reserved value {raw_type}"
                ) from None
        reader.finish()
        return cls(
            temperature=temperature,
            fahrenheit=bool(flags & TemperatureFlags.FAHRENHEIT),
            time_stamp=time_stamp,
            temperature_type=temperature_type,
        )


MAX_BATTERY_PERCENT = 100


@dataclass(frozen=True)
class BatteryLevel:
    """Battery Level (0x2A19): remaining charge in percent."""

    percent: int

    def __post_init__(self) -> None:
        check_int("percent", self.percent, 0, MAX_BATTERY_PERCENT)

    def to_bytes(self) -> bytes:
        return pack_uint(self.percent, 1)

    @classmethod
    def from_bytes(cls, data: bytes) -> BatteryLevel:
        reader = ValueReader(data, "battery_level")
        percent = reader.uint("percent", 1)
        reader.finish()
        return cls(percent)
