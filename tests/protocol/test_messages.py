from datetime import datetime, timedelta, timezone

import pytest

from protocol.errors import ProtocolError
from protocol.messages import (
    Ack,
    AlarmAcknowledge,
    DataGap,
    DeviceHello,
    EcgWaveform,
    Emergency,
    Measurement,
    VitalsNumerics,
    decode_central_message,
    decode_client_request,
    decode_device_message,
    encode,
    peek_sequence,
)

NOW = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


def numerics(**overrides: object) -> VitalsNumerics:
    fields: dict[str, object] = dict(
        device_id="bed-1-board",
        seq=7,
        sent_at=NOW,
        measured_at=NOW,
        measurements=[Measurement(code="MDC_ECG_HEART_RATE", value=72.0, unit="/min")],
    )
    fields.update(overrides)
    return VitalsNumerics(**fields)  # type: ignore[arg-type]


def waveform(**overrides: object) -> EcgWaveform:
    fields: dict[str, object] = dict(
        device_id="bed-1-board",
        seq=8,
        sent_at=NOW,
        lead="MLII",
        sample_rate_hz=360.0,
        first_sample_at=NOW,
        first_sample_index=3600,
        scale_uv=5.0,
        samples=[0, 12, -40, 200],
    )
    fields.update(overrides)
    return EcgWaveform(**fields)  # type: ignore[arg-type]


def rejection(data: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as caught:
        decode_device_message(data)
    return caught.value


@pytest.mark.parametrize(
    "message",
    [
        numerics(),
        waveform(),
        Emergency(
            device_id="bed-1-board",
            seq=9,
            sent_at=NOW,
            alarm_id="asystole-1",
            kind="asystole",
            priority="high",
            state="raised",
            started_at=NOW,
            evidence="no QRS for 4.2 s",
        ),
    ],
)
def test_device_messages_round_trip(message: object) -> None:
    assert decode_device_message(encode(message)) == message  # type: ignore[arg-type]


def test_wrong_type_names_field() -> None:
    error = rejection(encode(numerics()).replace(b'"seq":7', b'"seq":"7"'))
    assert error.field == "seq"
    assert "int" in error.problem


def test_negative_sequence_rejected() -> None:
    error = rejection(encode(numerics()).replace(b'"seq":7', b'"seq":-1'))
    assert error.field == "seq"


def test_unit_must_match_code() -> None:
    bad = numerics(
        measurements=[Measurement(code="MDC_ECG_HEART_RATE", value=72, unit="bpm")]
    )
    error = rejection(encode(bad))
    assert error.field == "measurements[0].unit"
    assert "/min" in error.problem


def test_unknown_code_rejected() -> None:
    bad = numerics(measurements=[Measurement(code="MDC_MADE_UP", value=1, unit="/min")])
    assert rejection(encode(bad)).field == "measurements[0].code"


def test_implausible_value_rejected() -> None:
    bad = numerics(
        measurements=[Measurement(code="MDC_PULS_OXIM_SAT_O2", value=140, unit="%")]
    )
    assert rejection(encode(bad)).field == "measurements[0].value"


def test_non_utc_time_rejected() -> None:
    local = NOW.astimezone(timezone(timedelta(hours=2)))
    assert rejection(encode(numerics(sent_at=local))).field == "sent_at"


def test_naive_time_rejected() -> None:
    data = encode(numerics()).replace(
        b'"sent_at":"2026-01-02T03:04:05Z"', b'"sent_at":"2026-01-02T03:04:05"'
    )
    assert rejection(data).field == "sent_at"


def test_sample_outside_int16_rejected() -> None:
    error = rejection(encode(waveform(samples=[0, 40000])))
    assert error.field == "samples[1]"


def test_unknown_lead_rejected() -> None:
    assert rejection(encode(waveform(lead="Z9"))).field == "lead"


def test_sample_rate_out_of_range_rejected() -> None:
    assert rejection(encode(waveform(sample_rate_hz=50.0))).field == "sample_rate_hz"


def test_unknown_field_named() -> None:
    data = encode(numerics()).replace(b'"seq":7', b'"seq":7,"colour":"red"')
    assert rejection(data).field == "colour"


def test_unknown_type_rejected() -> None:
    assert rejection(b'{"type":"vitals.guess","v":1}').field == "type"


def test_unsupported_version_rejected() -> None:
    error = rejection(encode(numerics()).replace(b'"v":1', b'"v":9'))
    assert error.field == "v"
    assert "9" in error.problem


def test_invalid_json_rejected() -> None:
    assert rejection(b'{"type": "vitals.numerics"').field == "message"


def test_peek_sequence_reads_broken_message() -> None:
    assert peek_sequence(b'{"seq": 41, "type": "nonsense"}') == 41
    assert peek_sequence(b"not json") is None
    assert peek_sequence(b'{"seq": -3}') is None


def test_ack_decodes() -> None:
    assert decode_central_message(encode(Ack(seqs=[1, 2]))) == Ack(seqs=[1, 2])


def test_client_subscribe_decodes() -> None:
    request = decode_client_request(b'{"type":"subscribe","v":1,"patient_id":"P-0001"}')
    assert request.patient_id == "P-0001"  # type: ignore[union-attr]


def test_nul_character_rejected() -> None:
    hello = DeviceHello(device_id="bed-1-board", seq=1, sent_at=NOW,
                        model="bedside\x00box", firmware="1.0")
    error = rejection(encode(hello))
    assert error.field == "model"
    assert "NUL" in error.problem


def test_gap_must_not_end_before_it_starts() -> None:
    gap = DataGap(device_id="bed-1-board", seq=3, sent_at=NOW, reason="buffer_full",
                  first_at=NOW, last_at=NOW - timedelta(seconds=1), messages_dropped=1)
    assert rejection(encode(gap)).field == "last_at"


def test_alarm_acknowledge_round_trip() -> None:
    message = AlarmAcknowledge(
        alarm_id="asystole-1767323045000", kind="asystole",
        acknowledged_by="Ana Nurse", acknowledged_at=NOW,
    )
    assert decode_central_message(encode(message)) == message


def test_alarm_acknowledge_needs_utc() -> None:
    text = encode(AlarmAcknowledge(
        alarm_id="a-1", kind="asystole", acknowledged_by="Ana", acknowledged_at=NOW,
    )).decode().replace("Z", "+01:00")
    with pytest.raises(ProtocolError) as caught:
        decode_central_message(text)
    assert caught.value.field == "acknowledged_at"
