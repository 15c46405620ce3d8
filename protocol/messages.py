"""Versioned WebSocket messages between devices, central and dashboards.

Every message is a JSON object whose ``type`` field names its kind and whose ``v``
field names the protocol version. Decoding is strict: unknown fields, wrong types,
out-of-range values and units that do not match their code raise ``ProtocolError``
naming the field, so a bad message is rejected whole and never half-stored.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Annotated, Literal, Union

import msgspec

from protocol import PROTOCOL_VERSION
from protocol.chat import ChatEnvelope
from protocol.codes import BY_REFERENCE_ID, KNOWN_ECG_LEADS
from protocol.errors import ProtocolError

Identifier = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
]
Sequence = Annotated[int, msgspec.Meta(ge=0, le=2**63 - 1)]
UtcTime = Annotated[datetime, msgspec.Meta(tz=True)]
Priority = Literal["high", "medium", "low"]
AlarmState = Literal["raised", "cleared"]
AlarmCategory = Literal["physiological", "technical"]
Fraction = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]

# One ECG message carries at most ~4 s at 1000 Hz; devices send ~0.25 to 1 s.
MAX_WAVEFORM_SAMPLES = 4096
INT16_MIN, INT16_MAX = -32768, 32767
MAX_MEASUREMENTS = 32


class _Message(
    msgspec.Struct, tag_field="type", forbid_unknown_fields=True, kw_only=True
):
    v: int = PROTOCOL_VERSION


class _DeviceMessage(_Message, kw_only=True):
    device_id: Identifier
    seq: Sequence
    sent_at: UtcTime


class Measurement(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One numeric vital sign: an IEEE 11073 reference id, a value and its UCUM unit."""

    code: str
    value: float
    unit: str
    quality: Fraction | None = None


class DeviceHello(_DeviceMessage, tag="device.hello", kw_only=True):
    """First message on every connection: what the device is and what it streams."""

    model: Annotated[str, msgspec.Meta(max_length=128)]
    firmware: Annotated[str, msgspec.Meta(max_length=64)]
    bed: Identifier | None = None


class VitalsNumerics(_DeviceMessage, tag="vitals.numerics", kw_only=True):
    """Numeric vital signs measured at ``measured_at``."""

    measured_at: UtcTime
    measurements: Annotated[
        list[Measurement], msgspec.Meta(min_length=1, max_length=MAX_MEASUREMENTS)
    ]


class EcgWaveform(_DeviceMessage, tag="vitals.waveform", kw_only=True):
    """A chunk of one ECG lead: integer ADC counts times ``scale_uv`` give microvolts.

    ``first_sample_index`` counts samples since the device started the stream, so a
    receiver can find gaps and overlaps without trusting clocks.
    """

    lead: str
    sample_rate_hz: Annotated[float, msgspec.Meta(ge=125.0, le=1000.0)]
    first_sample_at: UtcTime
    first_sample_index: Sequence
    scale_uv: Annotated[float, msgspec.Meta(gt=0.0, le=1000.0)]
    samples: Annotated[
        list[int], msgspec.Meta(min_length=1, max_length=MAX_WAVEFORM_SAMPLES)
    ]


class Emergency(_DeviceMessage, tag="patient.emergency", kw_only=True):
    """An alarm condition raised or cleared at the bedside."""

    alarm_id: Identifier
    kind: Identifier
    priority: Priority
    category: AlarmCategory = "physiological"
    state: AlarmState
    started_at: UtcTime
    evidence: Annotated[str, msgspec.Meta(max_length=2000)]


class DataGap(_DeviceMessage, tag="vitals.gap", kw_only=True):
    """Data the device produced but had to discard, so central can show the gap.

    ``first_sample_index`` and ``sample_count`` describe discarded ECG samples of
    ``lead``; ``messages_dropped`` counts every discarded message, numerics included.
    """

    reason: Identifier
    lead: str | None = None
    first_sample_index: Sequence | None = None
    sample_count: Annotated[int, msgspec.Meta(ge=0)] = 0
    first_at: UtcTime
    last_at: UtcTime
    messages_dropped: Annotated[int, msgspec.Meta(ge=1)]


class Ack(_Message, tag="ack", kw_only=True):
    """Central has committed these sequence numbers; the device may forget them."""

    seqs: list[Sequence]


class Rejected(_Message, tag="rejected", kw_only=True):
    """Central refused a message; ``seq`` is None when it could not be read."""

    seq: Sequence | None
    field: str
    problem: str


class AlarmAcknowledge(_Message, tag="alarm.acknowledge", kw_only=True):
    """A clinician at central acknowledged an alarm that the device raised.

    ``acknowledged_by`` is the clinician's display name, or their user id when no
    name is known; the device only logs it.
    """

    alarm_id: Identifier
    kind: Identifier
    acknowledged_by: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    acknowledged_at: UtcTime


# Dashboard side of the events WebSocket.


class Authenticate(_Message, tag="auth", kw_only=True):
    token: Annotated[str, msgspec.Meta(max_length=8192)]


class Subscribe(_Message, tag="subscribe", kw_only=True):
    patient_id: Identifier


class Unsubscribe(_Message, tag="unsubscribe", kw_only=True):
    patient_id: Identifier


class Subscribed(_Message, tag="subscribed", kw_only=True):
    patient_id: Identifier


class ErrorEvent(_Message, tag="error", kw_only=True):
    """A refused request on the events socket; ``status`` follows HTTP (401, 403...)."""

    status: int
    message: str
    patient_id: str | None = None


class WaveformSegment(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    lead: str
    sample_rate_hz: float
    first_sample_at: UtcTime
    first_sample_index: int
    scale_uv: float
    samples: list[int]


class VitalsUpdate(_Message, tag="vitals.update", kw_only=True):
    """Normalised vitals for one patient, sent only to clients allowed to see them."""

    patient_id: Identifier
    bed: str | None
    device_id: Identifier
    recorded_at: UtcTime
    measurements: list[Measurement] = []
    waveform: WaveformSegment | None = None


class PatientEmergency(_Message, tag="patient.emergency", kw_only=True):
    """An alarm for one patient, relayed to clients allowed to see that patient."""

    patient_id: Identifier
    bed: str | None
    device_id: Identifier
    alarm_id: Identifier
    kind: Identifier
    priority: Priority
    category: AlarmCategory
    state: AlarmState
    started_at: UtcTime
    evidence: str


class AlarmEscalated(_Message, tag="alarm.escalated", kw_only=True):
    """A high-priority alarm no one acknowledged in time, sent to a second recipient.

    Central sends it only to the dashboard connections of the users it names as
    recipients, each of whom may read the patient.
    """

    patient_id: Identifier
    bed: str | None
    device_id: Identifier
    alarm_id: Identifier
    kind: Identifier
    priority: Priority
    started_at: UtcTime
    escalated_at: UtcTime
    unacknowledged_s: Annotated[float, msgspec.Meta(ge=0.0)]
    recipient_role: str
    reason: str


class ChatMessageEvent(_Message, tag="chat.message", kw_only=True):
    """A new sealed chat envelope in a thread about ``patient_id``; ``id`` orders it."""

    patient_id: Identifier
    thread_id: str
    id: int
    envelope: ChatEnvelope
class SystemAlarm(_Message, tag="system.alarm", kw_only=True):
    """A technical alarm about central itself, for every dashboard watching a patient.

    ``instance`` names the central process that raised it; ``kind`` is for example
    ``event_relay_down`` while events from other instances cannot be relayed.
    """

    instance: Annotated[str, msgspec.Meta(min_length=1, max_length=128)]
    alarm_id: Identifier
    kind: Identifier
    priority: Priority
    state: AlarmState
    started_at: UtcTime
    evidence: str


DeviceMessage = Union[DeviceHello, VitalsNumerics, EcgWaveform, Emergency, DataGap]
CentralToDevice = Union[Ack, Rejected, AlarmAcknowledge]
ClientRequest = Union[Authenticate, Subscribe, Unsubscribe]
ServerEvent = Union[
    Subscribed,
    ErrorEvent,
    VitalsUpdate,
    PatientEmergency,
    AlarmEscalated,
    ChatMessageEvent,
    SystemAlarm,
]

_encoder = msgspec.json.Encoder()
_device_decoder = msgspec.json.Decoder(DeviceMessage)
_central_decoder = msgspec.json.Decoder(CentralToDevice)
_client_decoder = msgspec.json.Decoder(ClientRequest)
_event_decoder = msgspec.json.Decoder(ServerEvent)

# msgspec reports the failing location only inside its message text
# ("Expected `int`, got `str` - at `$.seq`"); it has no structured field, so the
# path is parsed out here and nowhere else.
_PATH_SUFFIX = re.compile(r"^(?P<problem>.*?)(?: - at `\$(?P<path>[^`]*)`)?$", re.S)
_UNKNOWN_FIELD = re.compile(r"unknown field `([^`]*)`")


def encode(message: msgspec.Struct) -> bytes:
    """Encode any protocol message as compact UTF-8 JSON."""
    return _encoder.encode(message)


def validation_problem(
    exc: msgspec.ValidationError, whole: str = "message"
) -> ProtocolError:
    """Return a ProtocolError naming the field a msgspec validation error is about.

    ``whole`` names the field when the error concerns the whole document.
    """
    match = _PATH_SUFFIX.match(str(exc))
    assert match is not None  # the pattern matches any text
    problem = match.group("problem")
    path = (match.group("path") or "").lstrip(".")
    unknown = _UNKNOWN_FIELD.search(problem)
    if unknown:
        path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
    return ProtocolError(path or whole, problem)


def _decode(decoder: msgspec.json.Decoder, data: bytes | str) -> object:
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise validation_problem(exc) from exc
    except msgspec.DecodeError as exc:
        raise ProtocolError("message", f"not valid JSON ({exc})") from exc


def _check_version(message: _Message) -> None:
    if message.v != PROTOCOL_VERSION:
        raise ProtocolError(
            "v", f"unsupported protocol version {message.v}; expected {PROTOCOL_VERSION}"
        )


def _check_utc(field: str, value: datetime) -> None:
    if value.utcoffset() != timedelta(0):
        raise ProtocolError(field, f"time must be UTC (offset +00:00), got {value}")


def _check_measurements(measurements: list[Measurement]) -> None:
    for index, item in enumerate(measurements):
        where = f"measurements[{index}]"
        sign = BY_REFERENCE_ID.get(item.code)
        if sign is None:
            raise ProtocolError(f"{where}.code", f"unknown vital-sign code {item.code!r}")
        spec = sign.value
        if item.unit != spec.unit:
            raise ProtocolError(
                f"{where}.unit",
                f"{item.code} must be in {spec.unit!r}, got {item.unit!r}",
            )
        if not spec.minimum <= item.value <= spec.maximum:
            raise ProtocolError(
                f"{where}.value",
                f"{item.value} {item.unit} is outside {spec.minimum}..{spec.maximum}",
            )


def _check_waveform(message: EcgWaveform) -> None:
    if message.lead not in KNOWN_ECG_LEADS:
        raise ProtocolError("lead", f"unknown ECG lead {message.lead!r}")
    _check_utc("first_sample_at", message.first_sample_at)
    samples = message.samples
    if min(samples) >= INT16_MIN and max(samples) <= INT16_MAX:
        return
    for index, value in enumerate(samples):
        if not INT16_MIN <= value <= INT16_MAX:
            raise ProtocolError(
                f"samples[{index}]", f"{value} is outside the int16 range"
            )


def _check_text(field: str, value: str | None) -> None:
    # PostgreSQL text cannot hold U+0000, and no display shows it: reject it here
    # rather than let storage fail on a message the device would resend forever.
    if value is not None and "\x00" in value:
        raise ProtocolError(field, "text must not contain the NUL character (U+0000)")


def validate_device_message(message: DeviceMessage) -> DeviceMessage:
    """Apply the checks that types alone cannot express; return the message."""
    _check_version(message)
    _check_utc("sent_at", message.sent_at)
    if isinstance(message, DeviceHello):
        _check_text("model", message.model)
        _check_text("firmware", message.firmware)
    if isinstance(message, VitalsNumerics):
        _check_utc("measured_at", message.measured_at)
        _check_measurements(message.measurements)
    elif isinstance(message, EcgWaveform):
        _check_waveform(message)
    elif isinstance(message, DataGap):
        _check_utc("first_at", message.first_at)
        _check_utc("last_at", message.last_at)
        if message.last_at < message.first_at:
            raise ProtocolError("last_at", "must not be before first_at")
    elif isinstance(message, Emergency):
        _check_utc("started_at", message.started_at)
        _check_text("evidence", message.evidence)
    return message


def decode_device_message(data: bytes | str) -> DeviceMessage:
    """Decode and validate one message sent by a device."""
    message = _decode(_device_decoder, data)
    return validate_device_message(message)  # type: ignore[arg-type]


def decode_central_message(data: bytes | str) -> CentralToDevice:
    """Decode and validate one message central sends to a device."""
    message = _decode(_central_decoder, data)
    _check_version(message)  # type: ignore[arg-type]
    if isinstance(message, AlarmAcknowledge):
        _check_utc("acknowledged_at", message.acknowledged_at)
        _check_text("acknowledged_by", message.acknowledged_by)
    return message  # type: ignore[return-value]


def decode_client_request(data: bytes | str) -> Authenticate | Subscribe | Unsubscribe:
    """Decode one request a dashboard client sends on the events socket."""
    message = _decode(_client_decoder, data)
    _check_version(message)  # type: ignore[arg-type]
    return message  # type: ignore[return-value]


def decode_server_event(data: bytes | str) -> ServerEvent:
    """Decode one event central sends to a dashboard client."""
    message = _decode(_event_decoder, data)
    _check_version(message)  # type: ignore[arg-type]
    return message  # type: ignore[return-value]


def peek_sequence(data: bytes | str) -> int | None:
    """Return the ``seq`` of a message that failed to decode, when it can be read."""
    try:
        loose = msgspec.json.decode(data)
    except msgspec.DecodeError:
        return None
    seq = loose.get("seq") if isinstance(loose, dict) else None
    return seq if isinstance(seq, int) and seq >= 0 else None
