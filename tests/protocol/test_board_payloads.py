import math
import struct

import pytest

from protocol.board import (
    MAX_ECG_SAMPLES,
    EcgPayload,
    HelloPayload,
    NumericsPayload,
    StatusPayload,
    decode_payload,
    encode_payload_frame,
)
from protocol.errors import ProtocolError
from protocol.framing import Frame, FrameParser, FrameType

HELLO = HelloPayload("bed-12", "1.0.3", 360.0, 5.0, "MLII")
# HELLO of the example above as documented in docs/serial-protocol.md.
HELLO_HEX = (
    "06 62 65 64 2d 31 32 05 31 2e 30 2e 33 00 00 b4 43 00 00 a0 40 04 4d 4c 49 49"
)


def hello_with(**changes: object) -> HelloPayload:
    values = {
        "board_id": "bed-12",
        "firmware_version": "1.0.3",
        "sample_rate_hz": 360.0,
        "microvolts_per_count": 5.0,
        "lead": "MLII",
    }
    values.update(changes)
    return HelloPayload(**values)


def field_of(error: pytest.ExceptionInfo[ProtocolError]) -> str:
    return error.value.field


# --- HELLO ---


def test_hello_round_trip():
    assert HelloPayload.from_bytes(HELLO.to_bytes()) == HELLO


def test_hello_matches_documented_bytes():
    assert HELLO.to_bytes() == bytes.fromhex(HELLO_HEX)


def test_hello_float32_scale_round_trip():
    hello = hello_with(sample_rate_hz=250.0, microvolts_per_count=1000 / 7247)
    decoded = HelloPayload.from_bytes(hello.to_bytes())
    assert decoded.microvolts_per_count == pytest.approx(1000 / 7247, rel=1e-6)
    assert decoded.sample_rate_hz == 250.0


def test_hello_accepts_utf8_board_id():
    hello = hello_with(board_id="Bett-3 Süd")
    assert HelloPayload.from_bytes(hello.to_bytes()).board_id == "Bett-3 Süd"


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"board_id": ""}, "board_id"),
        ({"board_id": "x" * 65}, "board_id"),
        ({"firmware_version": ""}, "firmware_version"),
        ({"firmware_version": "v" * 33}, "firmware_version"),
        ({"lead": ""}, "lead"),
        ({"lead": "L" * 17}, "lead"),
        ({"sample_rate_hz": 124.9}, "sample_rate_hz"),
        ({"sample_rate_hz": 1000.1}, "sample_rate_hz"),
        ({"sample_rate_hz": math.nan}, "sample_rate_hz"),
        ({"microvolts_per_count": 0.0}, "microvolts_per_count"),
        ({"microvolts_per_count": -1.0}, "microvolts_per_count"),
        ({"microvolts_per_count": math.inf}, "microvolts_per_count"),
        ({"microvolts_per_count": math.nan}, "microvolts_per_count"),
    ],
)
def test_hello_rejects_invalid_value(changes, field):
    with pytest.raises(ProtocolError) as caught:
        hello_with(**changes)
    assert field_of(caught) == field


@pytest.mark.parametrize(
    ("cut", "field"),
    [
        (0, "board_id"),
        (3, "board_id"),
        (7, "firmware_version"),
        (14, "sample_rate_hz"),
        (18, "microvolts_per_count"),
        (22, "lead"),
        (25, "lead"),
    ],
)
def test_hello_rejects_short_payload(cut, field):
    with pytest.raises(ProtocolError) as caught:
        HelloPayload.from_bytes(HELLO.to_bytes()[:cut])
    assert field_of(caught) == field


def test_hello_rejects_trailing_bytes():
    with pytest.raises(ProtocolError) as caught:
        HelloPayload.from_bytes(HELLO.to_bytes() + b"\x00")
    assert field_of(caught) == "payload"


def test_hello_rejects_invalid_utf8():
    payload = bytearray(HELLO.to_bytes())
    payload[1] = 0xFF
    with pytest.raises(ProtocolError) as caught:
        HelloPayload.from_bytes(bytes(payload))
    assert field_of(caught) == "board_id"


def test_hello_rejects_decoded_sample_rate_out_of_range():
    payload = bytearray(HELLO.to_bytes())
    payload[13:17] = struct.pack("<f", 2000.0)
    with pytest.raises(ProtocolError) as caught:
        HelloPayload.from_bytes(bytes(payload))
    assert field_of(caught) == "sample_rate_hz"


# --- ECG ---


def test_ecg_round_trip():
    ecg = EcgPayload(2**40, (0, 1, -1, 32767, -32768))
    assert EcgPayload.from_bytes(ecg.to_bytes()) == ecg


def test_ecg_max_samples_round_trip():
    ecg = EcgPayload(0, tuple(range(-1000, -1000 + MAX_ECG_SAMPLES)))
    assert EcgPayload.from_bytes(ecg.to_bytes()) == ecg


def test_ecg_accepts_list_and_stores_tuple():
    ecg = EcgPayload(5, [1, 2, 3])
    assert ecg.samples == (1, 2, 3)
    assert ecg.next_sample_index == 8


def test_ecg_to_millivolts():
    ecg = EcgPayload(0, (200, -100))
    assert ecg.to_millivolts(5.0) == pytest.approx([1.0, -0.5])


@pytest.mark.parametrize(
    ("first", "samples", "field"),
    [
        (-1, (0,), "first_sample_index"),
        (2**64, (0,), "first_sample_index"),
        (0, (), "count"),
        (0, (0,) * (MAX_ECG_SAMPLES + 1), "count"),
        (0, (32768,), "samples"),
        (0, (-32769,), "samples"),
    ],
)
def test_ecg_rejects_invalid_value(first, samples, field):
    with pytest.raises(ProtocolError) as caught:
        EcgPayload(first, samples)
    assert field_of(caught) == field


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"", "first_sample_index"),
        (bytes(7), "first_sample_index"),
        (bytes(9), "count"),
        (bytes(8) + struct.pack("<H", 3) + bytes(5), "samples"),
        (bytes(8) + struct.pack("<H", 0), "count"),
        (bytes(8) + struct.pack("<H", MAX_ECG_SAMPLES + 1), "count"),
        (bytes(8) + struct.pack("<H", 1) + bytes(3), "payload"),
    ],
)
def test_ecg_rejects_malformed_payload(payload, field):
    with pytest.raises(ProtocolError) as caught:
        EcgPayload.from_bytes(payload)
    assert field_of(caught) == field


# --- NUMERICS ---


def test_numerics_round_trip_all_present():
    numerics = NumericsPayload(97.0, 72.0, 16.0, 120.0, 80.0, 93.0, 36.5)
    assert NumericsPayload.from_bytes(numerics.to_bytes()) == numerics


def test_numerics_round_trip_none_present():
    numerics = NumericsPayload()
    assert numerics.to_bytes()[0] == 0
    assert NumericsPayload.from_bytes(numerics.to_bytes()) == numerics


def test_numerics_presence_mask_bits():
    numerics = NumericsPayload(spo2_percent=97.0, temperature_celsius=37.0)
    assert numerics.to_bytes()[0] == 0b0100_0001


def test_numerics_float32_precision():
    decoded = NumericsPayload.from_bytes(
        NumericsPayload(temperature_celsius=36.6).to_bytes()
    )
    assert decoded.temperature_celsius == pytest.approx(36.6, abs=1e-5)
    assert decoded.spo2_percent is None


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"spo2_percent": 100.5}, "spo2_percent"),
        ({"spo2_percent": -1.0}, "spo2_percent"),
        ({"pulse_rate_bpm": 351.0}, "pulse_rate_bpm"),
        ({"respiration_rate_bpm": 151.0}, "respiration_rate_bpm"),
        ({"nibp_systolic_mmhg": 401.0}, "nibp_systolic_mmhg"),
        ({"nibp_diastolic_mmhg": -5.0}, "nibp_diastolic_mmhg"),
        ({"nibp_mean_mmhg": math.inf}, "nibp_mean_mmhg"),
        ({"temperature_celsius": 10.0}, "temperature_celsius"),
        ({"temperature_celsius": math.nan}, "temperature_celsius"),
    ],
)
def test_numerics_rejects_out_of_range(changes, field):
    with pytest.raises(ProtocolError) as caught:
        NumericsPayload(**changes)
    assert field_of(caught) == field


def test_numerics_rejects_present_nan():
    payload = bytearray(NumericsPayload().to_bytes())
    payload[0] = 0b0000_0010
    with pytest.raises(ProtocolError) as caught:
        NumericsPayload.from_bytes(bytes(payload))
    assert field_of(caught) == "pulse_rate_bpm"


def test_numerics_rejects_value_without_presence_bit():
    payload = bytearray(NumericsPayload(spo2_percent=95.0).to_bytes())
    payload[0] = 0
    with pytest.raises(ProtocolError) as caught:
        NumericsPayload.from_bytes(bytes(payload))
    assert field_of(caught) == "spo2_percent"


def test_numerics_rejects_reserved_presence_bit():
    payload = bytearray(NumericsPayload().to_bytes())
    payload[0] = 0x80
    with pytest.raises(ProtocolError) as caught:
        NumericsPayload.from_bytes(bytes(payload))
    assert field_of(caught) == "presence"


@pytest.mark.parametrize(
    ("size", "field"),
    [
        (0, "presence"),
        (1, "spo2_percent"),
        (3, "spo2_percent"),
        (28, "temperature_celsius"),
    ],
)
def test_numerics_rejects_short_payload(size, field):
    with pytest.raises(ProtocolError) as caught:
        NumericsPayload.from_bytes(NumericsPayload().to_bytes()[:size])
    assert field_of(caught) == field


def test_numerics_rejects_trailing_bytes():
    with pytest.raises(ProtocolError) as caught:
        NumericsPayload.from_bytes(NumericsPayload().to_bytes() + b"\x00")
    assert field_of(caught) == "payload"


# --- STATUS ---


@pytest.mark.parametrize(
    "status",
    [
        StatusPayload(),
        StatusPayload(leads_off=True, battery_low=True, battery_percent=0),
        StatusPayload(battery_percent=100),
    ],
)
def test_status_round_trip(status):
    assert StatusPayload.from_bytes(status.to_bytes()) == status


def test_status_wire_bytes():
    assert StatusPayload(leads_off=True, battery_percent=80).to_bytes() == b"\x01\x50"
    assert StatusPayload().to_bytes() == b"\x00\xff"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (b"", "flags"),
        (b"\x00", "battery_percent"),
        (b"\x00\x65", "battery_percent"),
        (b"\x04\x10", "flags"),
        (b"\x00\x10\x00", "payload"),
    ],
)
def test_status_rejects_malformed_payload(payload, field):
    with pytest.raises(ProtocolError) as caught:
        StatusPayload.from_bytes(payload)
    assert field_of(caught) == field


def test_status_rejects_percent_out_of_range():
    with pytest.raises(ProtocolError) as caught:
        StatusPayload(battery_percent=101)
    assert field_of(caught) == "battery_percent"


# --- dispatch by frame type ---


@pytest.mark.parametrize(
    "payload",
    [HELLO, EcgPayload(0, (1,)), NumericsPayload(spo2_percent=99.0), StatusPayload()],
)
def test_decode_payload_by_frame_type(payload):
    frame = encode_payload_frame(payload, sequence=9)
    (parsed,) = FrameParser().feed(frame.to_bytes())
    assert parsed.type == payload.FRAME_TYPE
    assert decode_payload(parsed) == payload


def test_decode_payload_rejects_unknown_type():
    with pytest.raises(ProtocolError) as caught:
        decode_payload(Frame(99, 0, b""))
    assert field_of(caught) == "type"


def test_frame_types_of_payloads():
    assert HelloPayload.FRAME_TYPE is FrameType.HELLO
    assert EcgPayload.FRAME_TYPE is FrameType.ECG
    assert NumericsPayload.FRAME_TYPE is FrameType.NUMERICS
    assert StatusPayload.FRAME_TYPE is FrameType.STATUS
