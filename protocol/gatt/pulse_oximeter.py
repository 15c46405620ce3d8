"""PLX Spot-check (0x2A5E) and Continuous (0x2A5F) Measurements of the Pulse Oximeter
Service: SpO2 in percent and pulse rate per minute as SFLOATs, optional fields by flags.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import IntFlag

from protocol.gatt.values import (
    SFLOAT,
    ValueReader,
    check_decimal,
    check_flags,
    encode_date_time,
    pack_sfloat,
    pack_uint,
    sig_uuid,
)

PLX_SPOT_CHECK_MEASUREMENT_UUID = sig_uuid(0x2A5E)
PLX_CONTINUOUS_MEASUREMENT_UUID = sig_uuid(0x2A5F)


class PlxSpotCheckFlags(IntFlag):
    """Flags of PLX Spot-check Measurement; bits 5 to 7 are reserved."""

    TIMESTAMP_PRESENT = 0x01
    MEASUREMENT_STATUS_PRESENT = 0x02
    DEVICE_AND_SENSOR_STATUS_PRESENT = 0x04
    PULSE_AMPLITUDE_INDEX_PRESENT = 0x08
    DEVICE_CLOCK_NOT_SET = 0x10


class PlxContinuousFlags(IntFlag):
    """Flags of PLX Continuous Measurement; bits 5 to 7 are reserved."""

    SPO2PR_FAST_PRESENT = 0x01
    SPO2PR_SLOW_PRESENT = 0x02
    MEASUREMENT_STATUS_PRESENT = 0x04
    DEVICE_AND_SENSOR_STATUS_PRESENT = 0x08
    PULSE_AMPLITUDE_INDEX_PRESENT = 0x10


class PlxMeasurementStatus(IntFlag):
    """Measurement Status field (16 bits); bits 0 to 4 are reserved."""

    MEASUREMENT_ONGOING = 1 << 5
    EARLY_ESTIMATED_DATA = 1 << 6
    VALIDATED_DATA = 1 << 7
    FULLY_QUALIFIED_DATA = 1 << 8
    DATA_FROM_MEASUREMENT_STORAGE = 1 << 9
    DATA_FOR_DEMONSTRATION = 1 << 10
    DATA_FOR_TESTING = 1 << 11
    CALIBRATION_ONGOING = 1 << 12
    MEASUREMENT_UNAVAILABLE = 1 << 13
    QUESTIONABLE_MEASUREMENT_DETECTED = 1 << 14
    INVALID_MEASUREMENT_DETECTED = 1 << 15


class PlxDeviceAndSensorStatus(IntFlag):
    """Device and Sensor Status field (24 bits); bits 16 to 23 are reserved."""

    EXTENDED_DISPLAY_UPDATE_ONGOING = 1 << 0
    EQUIPMENT_MALFUNCTION_DETECTED = 1 << 1
    SIGNAL_PROCESSING_IRREGULARITY_DETECTED = 1 << 2
    INADEQUATE_SIGNAL_DETECTED = 1 << 3
    POOR_SIGNAL_DETECTED = 1 << 4
    LOW_PERFUSION_DETECTED = 1 << 5
    ERRATIC_SIGNAL_DETECTED = 1 << 6
    NONPULSATILE_SIGNAL_DETECTED = 1 << 7
    QUESTIONABLE_PULSE_DETECTED = 1 << 8
    SIGNAL_ANALYSIS_ONGOING = 1 << 9
    SENSOR_INTERFERENCE_DETECTED = 1 << 10
    SENSOR_UNCONNECTED_TO_USER = 1 << 11
    UNKNOWN_SENSOR_CONNECTED = 1 << 12
    SENSOR_DISPLACED = 1 << 13
    SENSOR_MALFUNCTIONING = 1 << 14
    SENSOR_DISCONNECTED = 1 << 15


@dataclass(frozen=True)
class SpO2PulseRate:
    """One SpO2 and pulse rate pair; None where the sensor has no valid value."""

    spo2_percent: float | None
    pulse_rate_bpm: float | None

    def __post_init__(self) -> None:
        check_decimal("spo2_percent", self.spo2_percent, SFLOAT)
        check_decimal("pulse_rate_bpm", self.pulse_rate_bpm, SFLOAT)

    def to_bytes(self, field: str) -> bytes:
        return pack_sfloat(self.spo2_percent, f"{field}.spo2_percent") + pack_sfloat(
            self.pulse_rate_bpm, f"{field}.pulse_rate_bpm"
        )

    @classmethod
    def read(cls, reader: ValueReader, field: str) -> SpO2PulseRate:
        spo2 = reader.sfloat(f"{field}.spo2_percent")
        return cls(spo2, reader.sfloat(f"{field}.pulse_rate_bpm"))


def _read_measurement_status(reader: ValueReader) -> PlxMeasurementStatus:
    raw = reader.uint("measurement_status", 2)
    check_flags("measurement_status", raw, sum(PlxMeasurementStatus))
    return PlxMeasurementStatus(raw)


def _read_device_and_sensor_status(reader: ValueReader) -> PlxDeviceAndSensorStatus:
    raw = reader.uint("device_and_sensor_status", 3)
    check_flags("device_and_sensor_status", raw, sum(PlxDeviceAndSensorStatus))
    return PlxDeviceAndSensorStatus(raw)


def _read_flags(reader: ValueReader, flag_type: type[IntFlag]) -> int:
    raw = reader.uint("flags", 1)
    check_flags("flags", raw, sum(flag_type))
    return raw


@dataclass(frozen=True, kw_only=True)
class _PlxStatusFields:
    """Optional fields that both PLX measurements end with."""

    measurement_status: PlxMeasurementStatus | None = None
    device_and_sensor_status: PlxDeviceAndSensorStatus | None = None
    pulse_amplitude_index_percent: float | None = None

    def _check_status_fields(self) -> None:
        check_decimal(
            "pulse_amplitude_index_percent", self.pulse_amplitude_index_percent, SFLOAT
        )
        if self.measurement_status is not None:
            check_flags(
                "measurement_status", self.measurement_status, sum(PlxMeasurementStatus)
            )
        if self.device_and_sensor_status is not None:
            check_flags(
                "device_and_sensor_status",
                self.device_and_sensor_status,
                sum(PlxDeviceAndSensorStatus),
            )

    def _pack_status_fields(self) -> bytes:
        out = b""
        if self.measurement_status is not None:
            out += pack_uint(self.measurement_status, 2)
        if self.device_and_sensor_status is not None:
            out += pack_uint(self.device_and_sensor_status, 3)
        if self.pulse_amplitude_index_percent is not None:
            out += pack_sfloat(
                self.pulse_amplitude_index_percent, "pulse_amplitude_index_percent"
            )
        return out

    @property
    def is_reliable(self) -> bool:
        """False when the sensor itself marks the values invalid or unavailable."""
        unusable = (
            PlxMeasurementStatus.MEASUREMENT_UNAVAILABLE
            | PlxMeasurementStatus.INVALID_MEASUREMENT_DETECTED
        )
        return not (self.measurement_status or 0) & unusable


@dataclass(frozen=True, kw_only=True)
class PlxSpotCheckMeasurement(_PlxStatusFields):
    """PLX Spot-check Measurement (0x2A5E), one reading taken on request."""

    reading: SpO2PulseRate
    # Time on the sensor's own clock, without a time zone.
    timestamp: datetime | None = None
    device_clock_set: bool = True

    def __post_init__(self) -> None:
        self._check_status_fields()

    def to_bytes(self) -> bytes:
        flags = PlxSpotCheckFlags(0)
        if self.timestamp is not None:
            flags |= PlxSpotCheckFlags.TIMESTAMP_PRESENT
        if self.measurement_status is not None:
            flags |= PlxSpotCheckFlags.MEASUREMENT_STATUS_PRESENT
        if self.device_and_sensor_status is not None:
            flags |= PlxSpotCheckFlags.DEVICE_AND_SENSOR_STATUS_PRESENT
        if self.pulse_amplitude_index_percent is not None:
            flags |= PlxSpotCheckFlags.PULSE_AMPLITUDE_INDEX_PRESENT
        if not self.device_clock_set:
            flags |= PlxSpotCheckFlags.DEVICE_CLOCK_NOT_SET
        out = pack_uint(flags, 1) + self.reading.to_bytes("reading")
        if self.timestamp is not None:
            out += encode_date_time(self.timestamp, "timestamp")
        return out + self._pack_status_fields()

    @classmethod
    def from_bytes(cls, data: bytes) -> PlxSpotCheckMeasurement:
        reader = ValueReader(data, "plx_spot_check_measurement")
        flags = PlxSpotCheckFlags(_read_flags(reader, PlxSpotCheckFlags))
        reading = SpO2PulseRate.read(reader, "reading")
        timestamp = status = device_status = amplitude = None
        if flags & PlxSpotCheckFlags.TIMESTAMP_PRESENT:
            timestamp = reader.date_time("timestamp")
        if flags & PlxSpotCheckFlags.MEASUREMENT_STATUS_PRESENT:
            status = _read_measurement_status(reader)
        if flags & PlxSpotCheckFlags.DEVICE_AND_SENSOR_STATUS_PRESENT:
            device_status = _read_device_and_sensor_status(reader)
        if flags & PlxSpotCheckFlags.PULSE_AMPLITUDE_INDEX_PRESENT:
            amplitude = reader.sfloat("pulse_amplitude_index_percent")
        reader.finish()
        return cls(
            reading=reading,
            timestamp=timestamp,
            device_clock_set=not flags & PlxSpotCheckFlags.DEVICE_CLOCK_NOT_SET,
            measurement_status=status,
            device_and_sensor_status=device_status,
            pulse_amplitude_index_percent=amplitude,
        )


@dataclass(frozen=True, kw_only=True)
class PlxContinuousMeasurement(_PlxStatusFields):
    """PLX Continuous Measurement (0x2A5F): the normal reading, optionally the fast
    and slow averages too."""

    normal: SpO2PulseRate
    fast: SpO2PulseRate | None = None
    slow: SpO2PulseRate | None = None

    def __post_init__(self) -> None:
        self._check_status_fields()

    def to_bytes(self) -> bytes:
        flags = PlxContinuousFlags(0)
        if self.fast is not None:
            flags |= PlxContinuousFlags.SPO2PR_FAST_PRESENT
        if self.slow is not None:
            flags |= PlxContinuousFlags.SPO2PR_SLOW_PRESENT
        if self.measurement_status is not None:
            flags |= PlxContinuousFlags.MEASUREMENT_STATUS_PRESENT
        if self.device_and_sensor_status is not None:
            flags |= PlxContinuousFlags.DEVICE_AND_SENSOR_STATUS_PRESENT
        if self.pulse_amplitude_index_percent is not None:
            flags |= PlxContinuousFlags.PULSE_AMPLITUDE_INDEX_PRESENT
        out = pack_uint(flags, 1) + self.normal.to_bytes("normal")
        if self.fast is not None:
            out += self.fast.to_bytes("fast")
        if self.slow is not None:
            out += self.slow.to_bytes("slow")
        return out + self._pack_status_fields()

    @classmethod
    def from_bytes(cls, data: bytes) -> PlxContinuousMeasurement:
        reader = ValueReader(data, "plx_continuous_measurement")
        flags = PlxContinuousFlags(_read_flags(reader, PlxContinuousFlags))
        normal = SpO2PulseRate.read(reader, "normal")
        fast = slow = status = device_status = amplitude = None
        if flags & PlxContinuousFlags.SPO2PR_FAST_PRESENT:
            fast = SpO2PulseRate.read(reader, "fast")
        if flags & PlxContinuousFlags.SPO2PR_SLOW_PRESENT:
            slow = SpO2PulseRate.read(reader, "slow")
        if flags & PlxContinuousFlags.MEASUREMENT_STATUS_PRESENT:
            status = _read_measurement_status(reader)
        if flags & PlxContinuousFlags.DEVICE_AND_SENSOR_STATUS_PRESENT:
            device_status = _read_device_and_sensor_status(reader)
        if flags & PlxContinuousFlags.PULSE_AMPLITUDE_INDEX_PRESENT:
            amplitude = reader.sfloat("pulse_amplitude_index_percent")
        reader.finish()
        return cls(
            normal=normal,
            fast=fast,
            slow=slow,
            measurement_status=status,
            device_and_sensor_status=device_status,
            pulse_amplitude_index_percent=amplitude,
        )
