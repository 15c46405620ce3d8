from datetime import datetime, timedelta, timezone

import numpy as np

from edge_agent.dsp.pipeline import AnalyzerSettings
from edge_agent.ecg_stream import EcgStream, Outgoing, StreamFormat

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=timezone.utc)
FORMAT = StreamFormat(lead="II", sample_rate_hz=250.0, scale_uv=5.0)


def make_stream() -> EcgStream:
    return EcgStream(
        "dev-1", FORMAT, AnalyzerSettings(), waveform_chunk_s=0.2,
        numerics_interval_s=1.0, clock=lambda: START,
    )


def beats_signal(seconds: float, bpm: float = 75.0) -> list[int]:
    """QRS-like 1 mV spikes (200 counts at 5 uV) at a steady rate."""
    # A little noise, as on any real lead; a perfectly flat baseline reads as leads off.
    samples = np.random.default_rng(7).normal(0.0, 3.0, int(seconds * FORMAT.sample_rate_hz))
    period = int(FORMAT.sample_rate_hz * 60 / bpm)
    spike = 200 * np.hanning(15)
    for start in range(50, len(samples) - 15, period):
        samples[start:start + 15] += spike
    return [int(value) for value in samples]


def built(out: Outgoing) -> list:
    messages = [build(seq) for seq, build in enumerate(out.waveforms)]
    messages += [build(seq) for seq, build in enumerate(out.numerics)]
    return messages


def feed(stream: EcgStream, first: int, counts: list[int], frame: int = 25) -> Outgoing:
    total = Outgoing()
    for offset in range(0, len(counts), frame):
        out = stream.add_samples(first + offset, counts[offset:offset + frame])
        total.waveforms += out.waveforms
        total.numerics += out.numerics
        total.alarms += out.alarms
    return total


def test_waveform_chunks_are_contiguous() -> None:
    stream = make_stream()
    out = feed(stream, 0, beats_signal(2.0))
    out.waveforms += stream.flush().waveforms
    chunks = [build(0) for build in out.waveforms]
    assert sum(len(chunk.samples) for chunk in chunks) == 500
    for chunk, following in zip(chunks, chunks[1:]):
        assert following.first_sample_index == chunk.first_sample_index + len(chunk.samples)


def test_sample_times_follow_index_not_arrival() -> None:
    stream = make_stream()
    out = feed(stream, 1000, beats_signal(1.0))
    chunks = [build(0) for build in out.waveforms]
    spacing = chunks[1].first_sample_at - chunks[0].first_sample_at
    assert spacing == timedelta(seconds=len(chunks[0].samples) / 250.0)


def test_heart_rate_numerics_sent() -> None:
    stream = make_stream()
    out = feed(stream, 0, beats_signal(12.0, bpm=75))
    rates = [m.value for message in (b(0) for b in out.numerics) for m in message.measurements]
    assert rates, "no heart rate was produced"
    assert abs(rates[-1] - 75) <= 4


def test_resent_overlap_is_trimmed() -> None:
    stream = make_stream()
    signal = beats_signal(1.0)
    feed(stream, 0, signal[:100])
    out = stream.add_samples(50, signal[50:150])
    out.waveforms += stream.flush().waveforms
    chunks = [build(0) for build in out.waveforms]
    assert chunks[0].first_sample_index == 100
    assert sum(len(chunk.samples) for chunk in chunks) == 50


def test_short_gap_is_counted_and_bridged() -> None:
    stream = make_stream()
    signal = beats_signal(2.0)
    feed(stream, 0, signal[:250])
    feed(stream, 300, signal[300:])
    assert stream.samples_missing == 50
    assert stream.analyzer.samples_seen == 500


def test_flat_line_raises_asystole() -> None:
    stream = make_stream()
    out = feed(stream, 0, beats_signal(8.0) + [0] * 250 * 6)
    kinds = [(change.kind, change.state) for change, _ in out.alarms]
    assert ("asystole", "raised") in kinds
    change, build = next(item for item in out.alarms if item[0].kind == "asystole")
    emergency = build(7)
    assert emergency.priority == "high"
    assert emergency.started_at > START


def test_long_gap_skipped_without_asystole() -> None:
    stream = make_stream()
    signal = beats_signal(16.0)
    first = feed(stream, 0, signal[:2500])
    after = feed(stream, 3750, signal[1250:])
    kinds = [change.kind for change, _ in first.alarms + after.alarms]
    assert "asystole" not in kinds
    assert stream.samples_missing == 1250
    assert stream.analyzer.samples_seen == 2500 + len(signal) - 1250
    chunks = [build(0) for build in after.waveforms]
    assert chunks[0].first_sample_index == 3750
    assert chunks[0].first_sample_at == START + timedelta(seconds=3750 / 250 - 0.1)


def test_board_restart_reanchors_time() -> None:
    stream = make_stream()
    feed(stream, 50_000, beats_signal(2.0))
    out = feed(stream, 0, beats_signal(1.0))
    chunks = [build(0) for build in out.waveforms]
    assert chunks[0].first_sample_index == 0
    assert chunks[0].first_sample_at == START - timedelta(seconds=0.1)


def test_clear_carries_raise_alarm_id() -> None:
    stream = make_stream()
    raised = stream.changes_to_send(
        stream.analyzer.set_condition("link_lost", True, "no central for 20 s")
    )
    raised.alarms += feed(stream, 0, beats_signal(2.0)).alarms
    cleared = stream.changes_to_send(stream.analyzer.set_condition("link_lost", False))
    ids = {change.state: build(0).alarm_id for change, build in raised.alarms + cleared.alarms
           if change.kind == "link_lost"}
    assert set(ids) == {"raised", "cleared"}
    assert ids["raised"] == ids["cleared"]


def test_held_frames_stamped_by_reference() -> None:
    stream = make_stream()
    # Two seconds of frames were held until the sensor's HELLO; the newest one
    # arrived just now, so the oldest sample is two seconds old.
    stream.set_time_reference(500, START)
    out = feed(stream, 0, beats_signal(2.0))
    chunks = [build(0) for build in out.waveforms]
    assert chunks[0].first_sample_at == START - timedelta(seconds=2)
