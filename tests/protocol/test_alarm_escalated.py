"""The alarm.escalated event: round trip and validation."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from protocol.errors import ProtocolError
from protocol.messages import AlarmEscalated, decode_server_event, encode

AT = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)


def _event(**changes: object) -> AlarmEscalated:
    fields: dict[str, object] = {
        "patient_id": "P-0001",
        "bed": "Bed 1",
        "device_id": "monitor-1",
        "alarm_id": "asystole-1",
        "kind": "asystole",
        "priority": "high",
        "started_at": AT,
        "escalated_at": AT,
        "unacknowledged_s": 120.0,
        "recipient_role": "physician",
        "reason": "asystole alarm has waited 120 s without an acknowledgement",
    }
    fields.update(changes)
    return AlarmEscalated(**fields)  # type: ignore[arg-type]


def test_escalated_round_trip() -> None:
    event = _event()
    assert decode_server_event(encode(event)) == event


def test_escalated_rejects_negative_wait() -> None:
    valid = encode(_event())
    data = valid.replace(b'"unacknowledged_s":120.0', b'"unacknowledged_s":-1')
    assert data != valid
    with pytest.raises(ProtocolError) as caught:
        decode_server_event(data)
    assert caught.value.field == "unacknowledged_s"
