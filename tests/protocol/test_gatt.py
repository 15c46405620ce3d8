"""Byte vectors, every flag combination, special values and round trips of the GATT
characteristics."""

from __future__ import annotations

import itertools
from datetime import datetime

import pytest

from protocol.errors import ProtocolError
from protocol.gatt import (
    BatteryLevel,
    BloodPressureMeasurement,
    BloodPressureStatus,
    HeartRateMeasurement,
    PlxContinuousMeasurement,
    PlxDeviceAndSensorStatus,
    PlxMeasurementStatus,
    PlxSpotCheckMeasurement,
    PolarEcgFrame,
    SpO2PulseRate,
    TemperatureMeasurement,
    TemperatureType,
)
from protocol.gatt.values import FLOAT, SFLOAT, decode_decimal, encode_decimal

# IEEE 11073-20601 special values: NaN, NRes, +INF, -INF, reserved.
SFLOAT_SPECIALS = [0x07FF, 0x0800, 0x07FE, 0x0802, 0x0801]
FLOAT_SPECIALS = [0x007FFFFF, 0x00800000, 0x007FFFFE, 0x00800002, 0x00800001]
SFLOAT_98_5 = bytes.fromhex("d9f3")  # 985 * 10**-1
SFLOAT_72 = bytes.fromhex("4800")
STAMP = datetime(2024, 3, 5, 14, 30, 15)
STAMP_BYTES = bytes.fromhex("e807") + bytes([3, 5, 14, 30, 15])


@pytest.mark.parametrize(
    ("raw", "value"),
    [(0x0048, 72.0), (0xF3D9, 98.5), (0x0000, 0.0), (0xFFFF, -0.1), (0x1001, 10.0),
     (0x07FD, 2045.0), (0x0803, -2045.0), (0x7001, 1e7)],
)
def test_sfloat_vectors(raw: int, value: float) -> None:
    assert decode_decimal(raw, SFLOAT) == value


@pytest.mark.parametrize("raw", SFLOAT_SPECIALS)
@pytest.mark.parametrize("exponent", [0, 3, 0xF])
def test_sfloat_specials_are_none(raw: int, exponent: int) -> None:
    assert decode_decimal(raw | exponent << 12, SFLOAT) is None


@pytest.mark.parametrize("raw", FLOAT_SPECIALS)
def test_float_specials_are_none(raw: int) -> None:
    assert decode_decimal(raw, FLOAT) is None


@pytest.mark.parametrize("value", [0.0, 36.6, -40.0, 98.5, 2045.0, 0.001, 1e7])
def test_sfloat_round_trip(value: float) -> None:
    assert decode_decimal(encode_decimal(value, SFLOAT, "x"), SFLOAT) == value


@pytest.mark.parametrize("value", [36.6, 37.25, -12.5, 98.6, 8388605.0])
def test_float_round_trip(value: float) -> None:
    assert decode_decimal(encode_decimal(value, FLOAT, "x"), FLOAT) == value


def test_encode_none_and_infinities() -> None:
    assert encode_decimal(None, SFLOAT, "x") == 0x07FF
    assert encode_decimal(float("inf"), SFLOAT, "x") == 0x07FE
    assert encode_decimal(float("-inf"), FLOAT, "x") == 0x00800002


def test_encode_too_large_names_field() -> None:
    with pytest.raises(ProtocolError) as caught:
        encode_decimal(3e10, SFLOAT, "systolic")
    assert caught.value.field == "systolic"


# Heart Rate Measurement


@pytest.mark.parametrize(
    ("rate", "contact", "energy", "rr"),
    list(itertools.product([72, 300], [None, False, True], [None, 1500],
                           [(), (1024,), (800, 820, 1100)])),
)
def test_heart_rate_every_flag_combination(rate, contact, energy, rr) -> None:
    flags = (0x01 if rate > 255 else 0) | (0x08 if energy is not None else 0)
    flags |= {None: 0, False: 0x04, True: 0x06}[contact] | (0x10 if rr else 0)
    expected = bytes([flags]) + rate.to_bytes(2 if rate > 255 else 1, "little")
    if energy is not None:
        expected += energy.to_bytes(2, "little")
    expected += b"".join(value.to_bytes(2, "little") for value in rr)
    value = HeartRateMeasurement(rate, contact, energy, rr)
    assert value.to_bytes() == expected
    assert HeartRateMeasurement.from_bytes(expected) == value


def test_heart_rate_16_bit_rate_below_256() -> None:
    assert HeartRateMeasurement.from_bytes(b"\x01\x48\x00").heart_rate_bpm == 72


def test_heart_rate_contact_bit_without_support_is_unknown() -> None:
    assert HeartRateMeasurement.from_bytes(b"\x02\x48").sensor_contact is None


def test_heart_rate_rr_seconds() -> None:
    value = HeartRateMeasurement.from_bytes(b"\x10\x48\x00\x04\x00\x02")
    assert value.rr_intervals_s == (1.0, 0.5)


@pytest.mark.parametrize(
    ("data", "field"),
    [(b"", "flags"), (b"\x00", "heart_rate_bpm"), (b"\x01\x48", "heart_rate_bpm"),
     (b"\x20\x48", "flags"), (b"\x80\x48", "flags"), (b"\x08\x48\x01", "energy_expended_kj"),
     (b"\x10\x48", "rr_intervals"), (b"\x10\x48\x00\x04\x01", "rr_intervals[1]"),
     (b"\x00\x48\x00", "value"), (b"\x10\x48" + b"\x00\x04" * 256, "heart_rate_measurement")],
)
def test_heart_rate_malformed(data: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        HeartRateMeasurement.from_bytes(data)
    assert caught.value.field == field


def test_heart_rate_construction_checks_range() -> None:
    with pytest.raises(ProtocolError, match="rr_intervals\\[0\\]"):
        HeartRateMeasurement(60, rr_intervals=(70000,))


# PLX


SPOT_OPTIONS = list(itertools.product([False, True], repeat=5))


@pytest.mark.parametrize(("stamp", "status", "device", "pai", "clock_unset"), SPOT_OPTIONS)
def test_plx_spot_check_every_flag_combination(stamp, status, device, pai, clock_unset):
    flags = stamp | status << 1 | device << 2 | pai << 3 | clock_unset << 4
    expected = bytes([flags]) + SFLOAT_98_5 + SFLOAT_72
    expected += STAMP_BYTES if stamp else b""
    expected += b"\x80\x00" if status else b""
    expected += b"\x20\x00\x00" if device else b""
    expected += bytes.fromhex("22f0") if pai else b""  # 34 * 10**-1
    value = PlxSpotCheckMeasurement(
        reading=SpO2PulseRate(98.5, 72.0),
        timestamp=STAMP if stamp else None,
        measurement_status=PlxMeasurementStatus.VALIDATED_DATA if status else None,
        device_and_sensor_status=(
            PlxDeviceAndSensorStatus.LOW_PERFUSION_DETECTED if device else None
        ),
        pulse_amplitude_index_percent=3.4 if pai else None,
        device_clock_set=not clock_unset,
    )
    assert value.to_bytes() == expected
    assert PlxSpotCheckMeasurement.from_bytes(expected) == value


@pytest.mark.parametrize(("fast", "slow", "status", "device", "pai"),
                         list(itertools.product([False, True], repeat=5)))
def test_plx_continuous_every_flag_combination(fast, slow, status, device, pai):
    flags = fast | slow << 1 | status << 2 | device << 3 | pai << 4
    expected = bytes([flags]) + SFLOAT_98_5 + SFLOAT_72
    expected += bytes.fromhex("6100") + bytes.fromhex("4600") if fast else b""
    expected += bytes.fromhex("6200") + bytes.fromhex("4400") if slow else b""
    expected += b"\x00\x80" if status else b""
    expected += b"\x00\x80\x00" if device else b""
    expected += bytes.fromhex("0200") if pai else b""
    value = PlxContinuousMeasurement(
        normal=SpO2PulseRate(98.5, 72.0),
        fast=SpO2PulseRate(97.0, 70.0) if fast else None,
        slow=SpO2PulseRate(98.0, 68.0) if slow else None,
        measurement_status=(
            PlxMeasurementStatus.INVALID_MEASUREMENT_DETECTED if status else None
        ),
        device_and_sensor_status=(
            PlxDeviceAndSensorStatus.SENSOR_DISCONNECTED if device else None
        ),
        pulse_amplitude_index_percent=2.0 if pai else None,
    )
    assert value.to_bytes() == expected
    assert PlxContinuousMeasurement.from_bytes(expected) == value
    assert value.is_reliable is not status


@pytest.mark.parametrize("special", SFLOAT_SPECIALS)
def test_plx_special_values_are_none(special: int) -> None:
    raw = special.to_bytes(2, "little")
    value = PlxContinuousMeasurement.from_bytes(b"\x00" + raw + raw)
    assert value.normal.spo2_percent is None
    assert value.normal.pulse_rate_bpm is None


@pytest.mark.parametrize(
    ("data", "field"),
    [(b"\x20" + SFLOAT_98_5 + SFLOAT_72, "flags"),
     (b"\x00" + SFLOAT_98_5, "normal.pulse_rate_bpm"),
     (b"\x01" + SFLOAT_98_5 + SFLOAT_72 + b"\x61\x00", "fast.pulse_rate_bpm"),
     (b"\x04" + SFLOAT_98_5 + SFLOAT_72 + b"\x01\x00", "measurement_status"),
     (b"\x08" + SFLOAT_98_5 + SFLOAT_72 + b"\x00\x00\x01", "device_and_sensor_status"),
     (b"\x00" + SFLOAT_98_5 + SFLOAT_72 + b"\x00", "value")],
)
def test_plx_continuous_malformed(data: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        PlxContinuousMeasurement.from_bytes(data)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("data", "field"),
    [(b"\xe0" + SFLOAT_98_5 + SFLOAT_72, "flags"),
     (b"\x01" + SFLOAT_98_5 + SFLOAT_72 + STAMP_BYTES[:5], "timestamp"),
     (b"\x01" + SFLOAT_98_5 + SFLOAT_72 + b"\xe8\x07\x02\x1e\x00\x00\x00", "timestamp"),
     (b"\x01" + SFLOAT_98_5 + SFLOAT_72 + b"\x10\x00\x01\x01\x00\x00\x00",
      "timestamp.year")],
)
def test_plx_spot_check_malformed(data: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        PlxSpotCheckMeasurement.from_bytes(data)
    assert caught.value.field == field


def test_plx_unknown_timestamp_is_none() -> None:
    data = b"\x01" + SFLOAT_98_5 + SFLOAT_72 + bytes(7)
    assert PlxSpotCheckMeasurement.from_bytes(data).timestamp is None


# Blood Pressure Measurement


@pytest.mark.parametrize(("kpa", "stamp", "pulse", "user", "status"),
                         list(itertools.product([False, True], repeat=5)))
def test_blood_pressure_every_flag_combination(kpa, stamp, pulse, user, status):
    flags = kpa | stamp << 1 | pulse << 2 | user << 3 | status << 4
    pressures = bytes.fromhex("7800 5000 5d00")  # 120, 80, 93
    expected = bytes([flags]) + pressures
    expected += STAMP_BYTES if stamp else b""
    expected += SFLOAT_72 if pulse else b""
    expected += b"\x03" if user else b""
    expected += b"\x0d\x00" if status else b""
    value = BloodPressureMeasurement(
        systolic=120.0, diastolic=80.0, mean_arterial=93.0, in_kpa=kpa,
        time_stamp=STAMP if stamp else None,
        pulse_rate_bpm=72.0 if pulse else None,
        user_id=3 if user else None,
        measurement_status=BloodPressureStatus(0x0D) if status else None,
    )
    assert value.to_bytes() == expected
    assert BloodPressureMeasurement.from_bytes(expected) == value


def test_blood_pressure_kpa_converts_to_mmhg() -> None:
    value = BloodPressureMeasurement(systolic=16.0, diastolic=10.7, mean_arterial=None,
                                     in_kpa=True)
    systolic, diastolic, mean = value.pressures_mmhg()
    assert systolic == pytest.approx(120.01, abs=0.01)
    assert diastolic == pytest.approx(80.26, abs=0.01)
    assert mean is None


@pytest.mark.parametrize("special", SFLOAT_SPECIALS)
def test_blood_pressure_special_values_are_none(special: int) -> None:
    raw = special.to_bytes(2, "little")
    value = BloodPressureMeasurement.from_bytes(b"\x00" + raw * 3)
    assert value.pressures_mmhg() == (None, None, None)


@pytest.mark.parametrize(
    ("data", "field"),
    [(b"\x20" + bytes(6), "flags"), (b"\x00" + bytes(5), "mean_arterial"),
     (b"\x10" + bytes(6) + b"\x18\x00", "measurement_status"),
     (b"\x10" + bytes(6) + b"\x40\x00", "measurement_status"),
     (b"\x08" + bytes(6), "user_id"), (b"\x00" + bytes(7), "value")],
)
def test_blood_pressure_malformed(data: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        BloodPressureMeasurement.from_bytes(data)
    assert caught.value.field == field


# Temperature Measurement and Battery Level


@pytest.mark.parametrize(("fahrenheit", "stamp", "kind"),
                         list(itertools.product([False, True], repeat=3)))
def test_temperature_every_flag_combination(fahrenheit, stamp, kind):
    flags = fahrenheit | stamp << 1 | kind << 2
    expected = bytes([flags]) + bytes.fromhex("6e0100ff")  # 366 * 10**-1
    expected += STAMP_BYTES if stamp else b""
    expected += b"\x06" if kind else b""
    value = TemperatureMeasurement(
        temperature=36.6, fahrenheit=fahrenheit,
        time_stamp=STAMP if stamp else None,
        temperature_type=TemperatureType.MOUTH if kind else None,
    )
    assert value.to_bytes() == expected
    assert TemperatureMeasurement.from_bytes(expected) == value


def test_temperature_fahrenheit_to_celsius() -> None:
    value = TemperatureMeasurement(temperature=98.6, fahrenheit=True)
    assert value.celsius == pytest.approx(37.0)


@pytest.mark.parametrize("special", FLOAT_SPECIALS)
def test_temperature_special_values_are_none(special: int) -> None:
    value = TemperatureMeasurement.from_bytes(b"\x00" + special.to_bytes(4, "little"))
    assert value.temperature is None
    assert value.celsius is None


@pytest.mark.parametrize(
    ("data", "field"),
    [(b"\x08" + bytes(4), "flags"), (b"\x00" + bytes(3), "temperature"),
     (b"\x04" + bytes(4) + b"\x00", "temperature_type"),
     (b"\x04" + bytes(4) + b"\x0a", "temperature_type"),
     (b"\x02" + bytes(4) + bytes(6), "time_stamp"), (b"\x00" + bytes(5), "value")],
)
def test_temperature_malformed(data: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        TemperatureMeasurement.from_bytes(data)
    assert caught.value.field == field


@pytest.mark.parametrize("percent", [0, 57, 100])
def test_battery_level_round_trip(percent: int) -> None:
    assert BatteryLevel.from_bytes(bytes([percent])) == BatteryLevel(percent)
    assert BatteryLevel(percent).to_bytes() == bytes([percent])


@pytest.mark.parametrize(
    ("data", "field"), [(b"", "percent"), (b"\x65", "percent"), (b"\x10\x00", "value")]
)
def test_battery_level_malformed(data: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        BatteryLevel.from_bytes(data)
    assert caught.value.field == field


# Polar H10 PMD ECG


def test_polar_ecg_vector() -> None:
    data = bytes([0]) + (123456789).to_bytes(8, "little") + bytes([0])
    data += bytes.fromhex("ffffff 640000 000080 ffff7f")
    frame = PolarEcgFrame.from_bytes(data)
    assert frame.timestamp_ns == 123456789
    assert frame.samples_uv == (-1, 100, -(2**23), 2**23 - 1)
    assert frame.to_bytes() == data


@pytest.mark.parametrize(
    ("data", "field"),
    [(bytes(9), "frame_type"), (b"\x02" + bytes(12), "measurement_type"),
     (bytes(9) + b"\x80" + bytes(3), "frame_type"),
     (bytes(10), "samples_uv"), (bytes(10) + bytes(4), "samples_uv"),
     (bytes(10) + bytes(3 * 170), "pmd_ecg_frame")],
)
def test_polar_ecg_malformed(data: bytes, field: str) -> None:
    with pytest.raises(ProtocolError) as caught:
        PolarEcgFrame.from_bytes(data)
    assert caught.value.field == field
