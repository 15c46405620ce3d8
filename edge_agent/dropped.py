"""Describe messages the buffer had to discard as explicit gaps for central.

Pure code: the discarded bodies go in, ``DataGap`` builders come out. Contiguous ECG
chunks merge into one gap, so a long outage is reported as one range, not thousands.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from protocol.messages import DataGap, EcgWaveform, decode_device_message

BUFFER_FULL = "buffer_full"
BUFFER_WRITE_FAILED = "buffer_write_failed"


@dataclass
class _Range:
    device_id: str
    lead: str | None
    first_index: int | None
    samples: int
    first_at: datetime
    last_at: datetime
    messages: int


def describe_dropped(
    bodies: Iterable[bytes], reason: str = BUFFER_FULL
) -> list[Callable[[int], DataGap]]:
    """Return one gap builder per contiguous ECG range, plus one for other messages."""
    ranges: list[_Range] = []
    others: _Range | None = None
    for body in bodies:
        message = decode_device_message(body)
        if isinstance(message, EcgWaveform):
            _add_waveform(ranges, message)
            continue
        at = message.sent_at
        if others is None:
            others = _Range(message.device_id, None, None, 0, at, at, 0)
        others.first_at = min(others.first_at, at)
        others.last_at = max(others.last_at, at)
        others.messages += 1
    if others is not None:
        ranges.append(others)
    return [_builder(item, reason) for item in ranges]


def _add_waveform(ranges: list[_Range], chunk: EcgWaveform) -> None:
    count = len(chunk.samples)
    end_at = chunk.first_sample_at + timedelta(seconds=count / chunk.sample_rate_hz)
    for item in ranges:
        if (item.lead == chunk.lead and item.first_index is not None
                and item.first_index + item.samples == chunk.first_sample_index):
            item.samples += count
            item.last_at = end_at
            item.messages += 1
            return
    ranges.append(_Range(chunk.device_id, chunk.lead, chunk.first_sample_index, count,
                         chunk.first_sample_at, end_at, 1))


def _builder(item: _Range, reason: str) -> Callable[[int], DataGap]:
    def build(seq: int) -> DataGap:
        return DataGap(
            device_id=item.device_id, seq=seq, sent_at=datetime.now(timezone.utc),
            reason=reason, lead=item.lead, first_sample_index=item.first_index,
            sample_count=item.samples, first_at=item.first_at, last_at=item.last_at,
            messages_dropped=item.messages,
        )

    return build
