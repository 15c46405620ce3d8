"""Bluetooth GATT characteristics of bedside sensors, and the Polar H10 ECG stream.

Each characteristic value is a frozen dataclass with ``from_bytes()`` and
``to_bytes()``. The constructor checks ranges, so a decoded value is as valid as one
built in code. Layouts follow the Bluetooth SIG Heart Rate, Pulse Oximeter, Blood
Pressure, Health Thermometer and Battery service specifications, little-endian
throughout. IEEE 11073 special values decode to ``None``, and every malformed value
raises ``ProtocolError`` naming the field.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol.gatt.blood_pressure import (
    BLOOD_PRESSURE_MEASUREMENT_UUID,
    BloodPressureFlags,
    BloodPressureMeasurement,
    BloodPressureStatus,
)
from protocol.gatt.heart_rate import (
    HEART_RATE_MEASUREMENT_UUID,
    HeartRateFlags,
    HeartRateMeasurement,
)
from protocol.gatt.polar_pmd import (
    POLAR_ECG_SAMPLE_RATE_HZ,
    POLAR_PMD_DATA_UUID,
    PolarEcgFrame,
)
from protocol.gatt.pulse_oximeter import (
    PLX_CONTINUOUS_MEASUREMENT_UUID,
    PLX_SPOT_CHECK_MEASUREMENT_UUID,
    PlxContinuousMeasurement,
    PlxDeviceAndSensorStatus,
    PlxMeasurementStatus,
    PlxSpotCheckMeasurement,
    SpO2PulseRate,
)
from protocol.gatt.thermometer import (
    BATTERY_LEVEL_UUID,
    TEMPERATURE_MEASUREMENT_UUID,
    BatteryLevel,
    TemperatureMeasurement,
    TemperatureType,
)
from protocol.gatt.values import sig_uuid

HEART_RATE_SERVICE_UUID = sig_uuid(0x180D)
PULSE_OXIMETER_SERVICE_UUID = sig_uuid(0x1822)
BLOOD_PRESSURE_SERVICE_UUID = sig_uuid(0x1810)
HEALTH_THERMOMETER_SERVICE_UUID = sig_uuid(0x1809)
BATTERY_SERVICE_UUID = sig_uuid(0x180F)

CharacteristicValue = (
    HeartRateMeasurement
    | PlxSpotCheckMeasurement
    | PlxContinuousMeasurement
    | BloodPressureMeasurement
    | TemperatureMeasurement
    | BatteryLevel
    | PolarEcgFrame
)

# Decoder for each supported characteristic, keyed by lower-case 128-bit UUID.
DECODERS: dict[str, Callable[[bytes], CharacteristicValue]] = {
    HEART_RATE_MEASUREMENT_UUID: HeartRateMeasurement.from_bytes,
    PLX_SPOT_CHECK_MEASUREMENT_UUID: PlxSpotCheckMeasurement.from_bytes,
    PLX_CONTINUOUS_MEASUREMENT_UUID: PlxContinuousMeasurement.from_bytes,
    BLOOD_PRESSURE_MEASUREMENT_UUID: BloodPressureMeasurement.from_bytes,
    TEMPERATURE_MEASUREMENT_UUID: TemperatureMeasurement.from_bytes,
    BATTERY_LEVEL_UUID: BatteryLevel.from_bytes,
    POLAR_PMD_DATA_UUID: PolarEcgFrame.from_bytes,
}

__all__ = [
    "BATTERY_LEVEL_UUID", "BATTERY_SERVICE_UUID", "BLOOD_PRESSURE_MEASUREMENT_UUID",
    "BLOOD_PRESSURE_SERVICE_UUID", "DECODERS", "HEALTH_THERMOMETER_SERVICE_UUID",
    "HEART_RATE_MEASUREMENT_UUID", "HEART_RATE_SERVICE_UUID",
    "PLX_CONTINUOUS_MEASUREMENT_UUID", "PLX_SPOT_CHECK_MEASUREMENT_UUID",
    "POLAR_ECG_SAMPLE_RATE_HZ", "POLAR_PMD_DATA_UUID", "PULSE_OXIMETER_SERVICE_UUID",
    "TEMPERATURE_MEASUREMENT_UUID", "BatteryLevel", "BloodPressureFlags",
    "BloodPressureMeasurement", "BloodPressureStatus", "CharacteristicValue",
    "HeartRateFlags", "HeartRateMeasurement", "PlxContinuousMeasurement",
    "PlxDeviceAndSensorStatus", "PlxMeasurementStatus", "PlxSpotCheckMeasurement",
    "PolarEcgFrame", "SpO2PulseRate", "TemperatureMeasurement", "TemperatureType",
]
