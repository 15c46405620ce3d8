"""ECG frames of the Polar H10 Measurement Data (PMD) stream.

A frame is a 10-byte header (measurement type, 8-byte timestamp, frame type) followed
by 3-byte signed little-endian samples in microvolts at 130 Hz. Only frame type 0 is
decoded; other frame types (bit 7 marks delta-compressed frames) raise
``ProtocolError``.

The H10 sends ECG only after a "start measurement" request on its PMD control point,
and only while indications of that control point are enabled. Layouts follow Polar's
Measurement Data specification as used by the Polar BLE SDK: a request is ``op code,
measurement type`` then ``setting type, count, value (uint16)`` per setting, and the
response is ``0xF0, op code, measurement type, error code``.
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.errors import ProtocolError
from protocol.gatt.values import (
    MAX_ATTRIBUTE_VALUE_BYTES,
    UINT64_MAX,
    ValueReader,
    check_int,
    pack_uint,
)

# Polar's vendor-specific 128-bit UUIDs of the PMD service.
POLAR_PMD_SERVICE_UUID = "fb005c80-02e7-f387-1cad-8acd2d8df0c8"
POLAR_PMD_CONTROL_POINT_UUID = "fb005c81-02e7-f387-1cad-8acd2d8df0c8"
POLAR_PMD_DATA_UUID = "fb005c82-02e7-f387-1cad-8acd2d8df0c8"

POLAR_ECG_SAMPLE_RATE_HZ = 130
PMD_MEASUREMENT_TYPE_ECG = 0
PMD_FRAME_TYPE_0 = 0
PMD_HEADER_BYTES = 10
ECG_SAMPLE_BYTES = 3
ECG_SAMPLE_MIN, ECG_SAMPLE_MAX = -(2**23), 2**23 - 1
MAX_ECG_SAMPLES = (MAX_ATTRIBUTE_VALUE_BYTES - PMD_HEADER_BYTES) // ECG_SAMPLE_BYTES

PMD_OP_START_MEASUREMENT = 0x02
PMD_RESPONSE_CODE = 0xF0
PMD_SETTING_SAMPLE_RATE = 0x00
PMD_SETTING_RESOLUTION = 0x01
# The H10 streams ECG at 130 Hz with 14-bit resolution only.
POLAR_ECG_RESOLUTION_BITS = 14
PMD_ERROR_SUCCESS = 0x00
PMD_ERROR_ALREADY_IN_STATE = 0x06


def start_ecg_request() -> bytes:
    """Return the control point request that starts the ECG stream at 130 Hz."""
    settings = (
        (PMD_SETTING_SAMPLE_RATE, POLAR_ECG_SAMPLE_RATE_HZ),
        (PMD_SETTING_RESOLUTION, POLAR_ECG_RESOLUTION_BITS),
    )
    request = bytes([PMD_OP_START_MEASUREMENT, PMD_MEASUREMENT_TYPE_ECG])
    for setting, value in settings:
        request += bytes([setting, 1]) + value.to_bytes(2, "little")
    return request


def start_ecg_response(error_code: int = PMD_ERROR_SUCCESS) -> bytes:
    """Return the control point response to a start request, as the H10 sends it."""
    return bytes([
        PMD_RESPONSE_CODE, PMD_OP_START_MEASUREMENT, PMD_MEASUREMENT_TYPE_ECG, error_code
    ])


def start_ecg_error(response: bytes) -> str | None:
    """Return why a control point response refuses the start, None if it accepts."""
    if len(response) < 4 or response[0] != PMD_RESPONSE_CODE:
        return f"unexpected control point response {response.hex()}"
    if response[1] != PMD_OP_START_MEASUREMENT:
        return f"response to op code 0x{response[1]:02x}, not to the start request"
    # A stream left running by an earlier connection is as good as a new one.
    if response[3] in (PMD_ERROR_SUCCESS, PMD_ERROR_ALREADY_IN_STATE):
        return None
    return f"start of the ECG stream refused with PMD error code {response[3]}"


@dataclass(frozen=True)
class PolarEcgFrame:
    """One PMD ECG frame of type 0."""

    # Sensor clock in nanoseconds. The carp_polar_package 1.4.2 documentation gives
    # its epoch as 2000-01-01.
    timestamp_ns: int
    samples_uv: tuple[int, ...]

    def __post_init__(self) -> None:
        check_int("timestamp_ns", self.timestamp_ns, 0, UINT64_MAX)
        check_int("samples_uv.count", len(self.samples_uv), 1, MAX_ECG_SAMPLES)
        for index, sample in enumerate(self.samples_uv):
            check_int(f"samples_uv[{index}]", sample, ECG_SAMPLE_MIN, ECG_SAMPLE_MAX)

    def to_bytes(self) -> bytes:
        header = (
            pack_uint(PMD_MEASUREMENT_TYPE_ECG, 1)
            + pack_uint(self.timestamp_ns, 8)
            + pack_uint(PMD_FRAME_TYPE_0, 1)
        )
        return header + b"".join(
            sample.to_bytes(ECG_SAMPLE_BYTES, "little", signed=True)
            for sample in self.samples_uv
        )

    @classmethod
    def from_bytes(cls, data: bytes) -> PolarEcgFrame:
        reader = ValueReader(data, "pmd_ecg_frame")
        measurement_type = reader.uint("measurement_type", 1)
        if measurement_type != PMD_MEASUREMENT_TYPE_ECG:
            raise ProtocolError(
                "measurement_type", f"expected {PMD_MEASUREMENT_TYPE_ECG} (ECG), "
                f"got {measurement_type}",
            )
        timestamp = reader.uint("timestamp_ns", 8)
        frame_type = reader.uint("frame_type", 1)
        if frame_type != PMD_FRAME_TYPE_0:
            raise ProtocolError(
                "frame_type", f"only frame type 0 is supported, got 0x{frame_type:02x}"
            )
        if reader.remaining == 0 or reader.remaining % ECG_SAMPLE_BYTES:
            raise ProtocolError(
                "samples_uv",
                f"{reader.remaining} bytes is not a positive multiple of "
                f"{ECG_SAMPLE_BYTES}",
            )
        samples = []
        while reader.remaining:
            raw = reader.take(f"samples_uv[{len(samples)}]", ECG_SAMPLE_BYTES)
            samples.append(int.from_bytes(raw, "little", signed=True))
        reader.finish()
        return cls(timestamp, tuple(samples))
