"""A chest strap's 130 Hz ECG through the agent's ECG stream: beats, rate, numbering."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from edge_agent.dsp.settings import AnalyzerSettings
from edge_agent.ecg_stream import EcgStream
from edge_agent.sources.polar import POLAR_ECG_FORMAT, PolarSampleCounter
from firmware_sim.ble.polar import SAMPLES_PER_FRAME, record_microvolts
from protocol.gatt import PolarEcgFrame

RECORD = Path(__file__).resolve().parents[2] / "firmware_sim" / "recordings" / "100"
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")
RATE_HZ = POLAR_ECG_FORMAT.sample_rate_hz
ANALYSED_S = 300.0
# Beats in the first minute are left out: the detector is still learning.
SKIPPED_START_S = 60.0
MATCH_WINDOW_S = 0.150
MIN_SCORE = 0.99


@pytest.fixture(scope="module")
def record_at_130_hz() -> tuple[np.ndarray, np.ndarray]:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The inplace keyword", category=DeprecationWarning
        )
        import wfdb

        annotation = wfdb.rdann(str(RECORD), "atr")
    is_beat = np.isin(annotation.symbol, sorted(BEAT_SYMBOLS))
    reference_s = annotation.sample[is_beat] / float(annotation.fs)
    return record_microvolts(RECORD), reference_s


def stream_frames(microvolts: np.ndarray) -> tuple[list[int], list[float]]:
    """Feed strap-sized frames to an ECG stream; return beat samples and heart rates."""
    stream = EcgStream("bed-ble", POLAR_ECG_FORMAT, AnalyzerSettings(), 0.25, 1.0)
    beats: list[int] = []
    rates: list[float] = []
    original = stream.analyzer.process

    def recording_process(samples_mv, pulse_signal=None):  # type: ignore[no-untyped-def]
        analysis = original(samples_mv, pulse_signal)
        beats.extend(analysis.beat_samples)
        return analysis

    stream.analyzer.process = recording_process  # type: ignore[method-assign]
    for first in range(0, len(microvolts), SAMPLES_PER_FRAME):
        frame = [int(value) for value in microvolts[first:first + SAMPLES_PER_FRAME]]
        out = stream.add_samples(first, frame)
        for build in out.numerics:
            rates.extend(m.value for m in build(0).measurements)
    return beats, rates


def test_strap_ecg_beats_match_annotations(record_at_130_hz) -> None:
    microvolts, reference_s = record_at_130_hz
    head = microvolts[: round(ANALYSED_S * RATE_HZ)]
    beats, _ = stream_frames(head)
    detected_s = np.asarray(beats) / RATE_HZ
    reference_s = reference_s[(reference_s >= SKIPPED_START_S)
                              & (reference_s < ANALYSED_S - 1.0)]
    detected_s = detected_s[(detected_s >= SKIPPED_START_S)
                            & (detected_s < ANALYSED_S - 1.0)]
    matched = sum(
        1 for time_s in reference_s
        if np.min(np.abs(detected_s - time_s)) <= MATCH_WINDOW_S
    )
    sensitivity = matched / len(reference_s)
    predictivity = matched / len(detected_s)
    print(f"\nrecord 100 at 130 Hz: Se {100 * sensitivity:.2f} %, "
          f"+P {100 * predictivity:.2f} % over {len(reference_s)} beats")
    assert sensitivity >= MIN_SCORE
    assert predictivity >= MIN_SCORE


def test_strap_ecg_heart_rate(record_at_130_hz) -> None:
    microvolts, _ = record_at_130_hz
    _, rates = stream_frames(microvolts[: round(60 * RATE_HZ)])
    # Record 100 has 74 to 76 beats a minute in its first minutes.
    assert len(rates) >= 50
    assert all(65.0 <= rate <= 85.0 for rate in rates), rates


def frame_at(last_sample: int, count: int = SAMPLES_PER_FRAME) -> PolarEcgFrame:
    timestamp_ns = last_sample * 1_000_000_000 // 130
    return PolarEcgFrame(timestamp_ns, tuple(range(count)))


def test_counter_numbers_consecutive_frames() -> None:
    counter = PolarSampleCounter()
    assert counter.number(frame_at(72)) == 0
    assert counter.number(frame_at(145)) == 73
    assert counter.number(frame_at(218)) == 146


def test_counter_skips_lost_frames() -> None:
    counter = PolarSampleCounter()
    counter.number(frame_at(72))
    # Two frames (146 samples) were lost while the link was down.
    assert counter.number(frame_at(72 + 3 * 73)) == 3 * 73


def test_counter_tolerates_clock_jitter() -> None:
    counter = PolarSampleCounter()
    counter.number(frame_at(72))
    jittered = PolarEcgFrame(frame_at(145).timestamp_ns + 20_000_000, tuple(range(73)))
    assert counter.number(jittered) == 73


def test_counter_continues_after_clock_restart() -> None:
    counter = PolarSampleCounter()
    counter.number(frame_at(10_000))
    assert counter.number(frame_at(72)) == 73
