"""Turns the board's ECG frames into protocol messages: waveform, numerics, alarms.

Pure logic with no I/O: frames go in, messages to buffer come out. Sample times are
derived from the board's sample index and one wall-clock anchor taken at the first
frame, so jitter in serial delivery never bends the time axis.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import numpy as np

from edge_agent.dsp.pipeline import AlarmChange, AnalyzerSettings, EcgAnalyzer
from protocol.codes import VitalSign
from protocol.messages import Emergency, EcgWaveform, Measurement, VitalsNumerics

logger = logging.getLogger(__name__)

# Below this signal quality (a flat, saturated or very noisy lead) no heart rate is
# sent, so the nurse's display goes stale instead of showing the last good rate.
MIN_QUALITY_FOR_RATE = 0.2
# A gap shorter than this is fed to the analyzer as missing samples. A longer one is
# skipped, because the analyzer would read seconds of missing samples as seconds
# without a beat, a false asystole. The agent reports the silence as a technical alarm.
MAX_BRIDGED_GAP_S = 0.5


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class StreamFormat:
    lead: str
    sample_rate_hz: float
    scale_uv: float


@dataclass
class Outgoing:
    """Messages ready for the buffer; each builder takes the sequence number."""

    waveforms: list[Callable[[int], EcgWaveform]] = field(default_factory=list)
    numerics: list[Callable[[int], VitalsNumerics]] = field(default_factory=list)
    alarms: list[tuple[AlarmChange, Callable[[int], Emergency]]] = field(
        default_factory=list
    )


class EcgStream:
    """State of one ECG lead from one board: analyzer, time anchor, pending chunk."""

    def __init__(
        self, device_id: str, stream_format: StreamFormat, settings: AnalyzerSettings,
        waveform_chunk_s: float, numerics_interval_s: float,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.device_id = device_id
        self.format = stream_format
        self._clock = clock
        rate = stream_format.sample_rate_hz
        self._chunk_samples = max(1, round(waveform_chunk_s * rate))
        self._numerics_every = max(1, round(numerics_interval_s * rate))
        self.analyzer = EcgAnalyzer(rate, settings)
        self._anchor_time: datetime | None = None
        self._anchor_index = 0  # board sample index taken at _anchor_time
        # Board index minus analyzer sample number; it changes when the analyzer
        # skips a long gap or the board restarts its counter.
        self._index_offset = 0
        self._next_index: int | None = None
        self._pending: list[int] = []
        self._pending_first_index = 0
        self._next_numerics_at = self._numerics_every
        self._heart_rate: float | None = None
        self._quality = 0.0
        self._alarm_ids: dict[str, str] = {}
        self._reference: tuple[int, datetime] | None = None
        self.samples_missing = 0

    def set_time_reference(self, board_index: int, at: datetime) -> None:
        """Say that the sample before ``board_index`` arrived at ``at``.

        Frames held back until the sensor's HELLO arrive late; without this the
        oldest of them would be stamped with the current time.
        """
        self._reference = (board_index, at)

    def time_of(self, board_index: int) -> datetime:
        if self._anchor_time is None:
            return self._clock()  # before the first sample, as for a lost link at boot
        offset_s = (board_index - self._anchor_index) / self.format.sample_rate_hz
        return self._anchor_time + timedelta(seconds=offset_s)

    def add_samples(self, first_index: int, counts: list[int]) -> Outgoing:
        """Analyse one frame of ADC counts and return what should be sent."""
        out = Outgoing()
        if not counts:
            return out
        if self._next_index is None:
            self._start_segment(first_index, len(counts))
        elif first_index < self._next_index - self.format.sample_rate_hz:
            logger.warning("board %s restarted its sample counter at %d",
                           self.device_id, first_index)
            self._flush_waveform(out)
            self._start_segment(first_index, len(counts))
        elif first_index < self._next_index:
            # An overlap after a resent frame: keep only the new tail.
            counts = counts[self._next_index - first_index:]
            first_index = self._next_index
            if not counts:
                return out
        elif first_index > self._next_index:
            self._skip_gap(first_index, out)
        self._analyse(first_index, counts, out)
        return out

    def changes_to_send(self, changes: list[AlarmChange]) -> Outgoing:
        """Wrap alarm changes from the analyzer's methods (conditions, limits)."""
        out = Outgoing()
        self._collect_alarms(changes, out)
        return out

    def alarm_id_of(self, kind: str) -> str | None:
        """Return the id sent with the current raise of ``kind``, None if not raised."""
        return self._alarm_ids.get(kind)

    def _start_segment(self, first_index: int, frame_samples: int) -> None:
        reference_index, reference_time = self._reference or (
            first_index + frame_samples, self._clock()
        )
        self._reference = None
        span_s = (reference_index - first_index) / self.format.sample_rate_hz
        self._anchor_time = reference_time - timedelta(seconds=span_s)
        self._anchor_index = first_index
        self._index_offset = first_index - self.analyzer.samples_seen
        self._next_index = first_index

    def _skip_gap(self, first_index: int, out: Outgoing) -> None:
        assert self._next_index is not None
        gap = first_index - self._next_index
        self.samples_missing += gap
        self._flush_waveform(out)
        logger.warning("board %s: %d samples missing before index %d",
                       self.device_id, gap, first_index)
        if gap <= MAX_BRIDGED_GAP_S * self.format.sample_rate_hz:
            analysis = self.analyzer.process(np.full(gap, np.nan))
            self._collect_alarms(analysis.alarms, out)
        else:
            self._index_offset += gap
        self._next_index = first_index

    def _analyse(self, first_index: int, counts: list[int], out: Outgoing) -> None:
        if not self._pending:
            self._pending_first_index = first_index
        self._pending.extend(counts)
        self._next_index = first_index + len(counts)

        millivolts = np.asarray(counts, dtype=np.float64) * (self.format.scale_uv / 1000.0)
        analysis = self.analyzer.process(millivolts)
        # None means no current reading (too few beats, or none for seconds), and the
        # nurse must then see the value go stale rather than the last rate.
        self._heart_rate = analysis.heart_rate_bpm
        self._quality = analysis.signal_quality
        self._collect_alarms(analysis.alarms, out)

        if len(self._pending) >= self._chunk_samples:
            self._flush_waveform(out)
        if self.analyzer.samples_seen >= self._next_numerics_at:
            self._next_numerics_at += self._numerics_every
            builder = self._numerics_builder(self._next_index)
            if builder is not None:
                out.numerics.append(builder)

    def flush(self) -> Outgoing:
        """Emit the partial waveform chunk, for a quiet board or a shutdown."""
        out = Outgoing()
        self._flush_waveform(out)
        return out

    def _flush_waveform(self, out: Outgoing) -> None:
        if not self._pending:
            return
        samples = self._pending
        first_index = self._pending_first_index
        first_at = self.time_of(first_index)
        self._pending = []
        fmt = self.format

        def build(seq: int) -> EcgWaveform:
            return EcgWaveform(
                device_id=self.device_id, seq=seq, sent_at=self._clock(),
                lead=fmt.lead, sample_rate_hz=fmt.sample_rate_hz,
                first_sample_at=first_at, first_sample_index=first_index,
                scale_uv=fmt.scale_uv, samples=samples,
            )

        out.waveforms.append(build)

    def _numerics_builder(self, board_index: int) -> Callable[[int], VitalsNumerics] | None:
        if self._heart_rate is None or self._quality < MIN_QUALITY_FOR_RATE:
            return None
        spec = VitalSign.HEART_RATE.value
        measurement = Measurement(
            code=spec.mdc_reference_id, value=round(self._heart_rate, 1), unit=spec.unit,
            quality=round(min(1.0, max(0.0, self._quality)), 3),
        )
        measured_at = self.time_of(board_index)

        def build(seq: int) -> VitalsNumerics:
            return VitalsNumerics(
                device_id=self.device_id, seq=seq, sent_at=self._clock(),
                measured_at=measured_at, measurements=[measurement],
            )

        return build

    def _collect_alarms(self, changes: list[AlarmChange], out: Outgoing) -> None:
        for change in changes:
            out.alarms.append((change, self._emergency_builder(change)))

    def _emergency_builder(self, change: AlarmChange) -> Callable[[int], Emergency]:
        started_at = self.time_of(change.onset_sample + self._index_offset)
        # A clear carries the id of the raise it ends, so central can pair them.
        if change.state == "raised" or change.kind not in self._alarm_ids:
            self._alarm_ids[change.kind] = (
                f"{change.kind}-{int(started_at.timestamp() * 1000)}"[:64]
            )
        alarm_id = self._alarm_ids[change.kind]
        if change.state == "cleared":
            del self._alarm_ids[change.kind]

        def build(seq: int) -> Emergency:
            return Emergency(
                device_id=self.device_id, seq=seq, sent_at=self._clock(),
                alarm_id=alarm_id, kind=change.kind, priority=change.priority,
                category=change.category, state=change.state, started_at=started_at, evidence=change.evidence,
            )

        return build
