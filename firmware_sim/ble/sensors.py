"""The simulated bedside sensors: heart rate strap, pulse oximeter, blood pressure cuff
and thermometer, each sending encoded ``protocol.gatt`` values."""

from __future__ import annotations

from collections.abc import Sequence

from bumble import gatt
from bumble.core import UUID

from firmware_sim.ble.peripheral import Feed, SimulatedSensor, ValueSource, stepped
from firmware_sim.ble.radio import VirtualRadio
from protocol.gatt import (
    BloodPressureMeasurement,
    HeartRateMeasurement,
    PlxContinuousMeasurement,
    SpO2PulseRate,
    TemperatureMeasurement,
)

# Services and characteristics bumble 0.0.236 has no named constant for.
PLX_CONTINUOUS_MEASUREMENT = UUID.from_16_bits(0x2A5F, "PLX Continuous Measurement")
BLOOD_PRESSURE_MEASUREMENT = UUID.from_16_bits(0x2A35, "Blood Pressure Measurement")
TEMPERATURE_MEASUREMENT = UUID.from_16_bits(0x2A1C, "Temperature Measurement")

# A resting adult; the RR interval of 60 bpm is 1024/1024 s.
RESTING_HEART_RATE_BPM = 60
RR_UNITS_PER_MINUTE = 60 * 1024


def heart_rates(rates_bpm: Sequence[int]) -> ValueSource:
    """Heart Rate Measurements with skin contact and one RR interval per rate."""
    return stepped([
        HeartRateMeasurement(
            rate, sensor_contact=True,
            rr_intervals=(RR_UNITS_PER_MINUTE // rate,) if rate else (),
        ).to_bytes()
        for rate in rates_bpm
    ])


def heart_rate_sensor(
    radio: VirtualRadio, address: str, rates_bpm: Sequence[int] = (RESTING_HEART_RATE_BPM,)
) -> SimulatedSensor:
    """Create a heart rate strap that sends the rates in turn, with skin contact."""
    device = radio.make_device("AURA HR strap", address)
    feed = Feed(gatt.GATT_HEART_RATE_SERVICE,
                gatt.GATT_HEART_RATE_MEASUREMENT_CHARACTERISTIC, heart_rates(rates_bpm))
    return SimulatedSensor(device, [feed])


def pulse_oximeter(
    radio: VirtualRadio, address: str,
    readings: Sequence[tuple[float, float]] = ((98.0, 72.0),),
) -> SimulatedSensor:
    """Create a continuous pulse oximeter that sends (SpO2 %, pulse rate /min) pairs in turn."""
    device = radio.make_device("AURA pulse oximeter", address)
    values = [
        PlxContinuousMeasurement(normal=SpO2PulseRate(spo2, rate)).to_bytes()
        for spo2, rate in readings
    ]
    feed = Feed(gatt.GATT_PULSE_OXIMETER_SERVICE, PLX_CONTINUOUS_MEASUREMENT,
                stepped(values))
    return SimulatedSensor(device, [feed])


def blood_pressure_monitor(
    radio: VirtualRadio, address: str,
    readings: Sequence[tuple[float, float, float]] = ((120.0, 80.0, 93.0),),
) -> SimulatedSensor:
    """Create a blood pressure cuff that indicates (systolic, diastolic, mean) readings in mmHg in turn."""
    device = radio.make_device("AURA blood pressure cuff", address)
    values = [
        BloodPressureMeasurement(
            systolic=systolic, diastolic=diastolic, mean_arterial=mean
        ).to_bytes()
        for systolic, diastolic, mean in readings
    ]
    feed = Feed(gatt.GATT_BLOOD_PRESSURE_SERVICE, BLOOD_PRESSURE_MEASUREMENT,
                stepped(values), indicate=True)
    return SimulatedSensor(device, [feed])


def thermometer(
    radio: VirtualRadio, address: str, celsius: Sequence[float] = (36.8,)
) -> SimulatedSensor:
    """Create a thermometer that indicates body temperatures in degrees Celsius in turn."""
    device = radio.make_device("AURA thermometer", address)
    values = [TemperatureMeasurement(temperature=value).to_bytes() for value in celsius]
    feed = Feed(gatt.GATT_HEALTH_THERMOMETER_SERVICE, TEMPERATURE_MEASUREMENT,
                stepped(values), indicate=True)
    return SimulatedSensor(device, [feed])
