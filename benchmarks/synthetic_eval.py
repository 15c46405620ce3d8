"""Heart rate, alarm timing and beat detection of the analyzer on synthetic ECG."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from benchmarks.ec57 import BeatScore, score_beats
from edge_agent.dsp.pipeline import EcgAnalyzer
from firmware_sim.scenarios import (
    build_scenario,
)
from firmware_sim.synthetic import (
    Episode,
    EpisodeKind,
    Rhythm,
    Segment,
    SyntheticEcg,
    synthesize,
)

if TYPE_CHECKING:
    from edge_agent.alarms import AlarmChange

logger = logging.getLogger(__name__)

SAMPLE_RATE_HZ = 250.0
SEED = 1
HEART_RATE_CHUNK_S = 1.0
ALARM_CHUNK_S = 0.25
# Reported rate counts as right within 5 bpm or 10 %, whichever is wider.
RATE_TOLERANCE_BPM = 5.0
RATE_TOLERANCE_FRACTION = 0.10
# A raise counts for an episode if it is reported up to this long after it ends.
ALARM_MATCH_AFTER_END_S = 10.0
# AlarmChange.state of a raise; compared as a string so the benchmark depends only on
# what EcgAnalyzer returns.
RAISED = "raised"

# Names the analyzer may give each alarm kind, tried in order.
ANALYZER_KIND_NAMES: dict[EpisodeKind, tuple[str, ...]] = {
    EpisodeKind.ASYSTOLE: ("asystole",),
    EpisodeKind.EXTREME_BRADYCARDIA: ("extreme_bradycardia",),
    EpisodeKind.EXTREME_TACHYCARDIA: ("extreme_tachycardia",),
    EpisodeKind.VENTRICULAR_TACHYCARDIA: ("ventricular_tachycardia", "vtach", "vt"),
    EpisodeKind.VENTRICULAR_FIBRILLATION: (
        "ventricular_fibrillation",
        "ventricular_flutter_fibrillation",
        "vfib",
        "vf",
    ),
}

HEART_RATE_CASES: dict[str, tuple[Segment, ...]] = {
    "steady 40 bpm": (Segment(Rhythm.SINUS, 60.0, rate_bpm=40.0),),
    "steady 75 bpm": (Segment(Rhythm.SINUS, 60.0, rate_bpm=75.0),),
    "steady 150 bpm": (Segment(Rhythm.SINUS, 60.0, rate_bpm=150.0),),
    "irregular 110 bpm": (Segment(Rhythm.IRREGULAR, 60.0, rate_bpm=110.0),),
    "step 60->120 bpm": (
        Segment(Rhythm.SINUS, 30.0, rate_bpm=60.0),
        Segment(Rhythm.SINUS, 30.0, rate_bpm=120.0),
    ),
}
ALARM_SCENARIOS = ("asystole", "brady-35", "tachy-160", "vt", "vf")
CLEAN_SCENARIOS = ("normal-75", "afib-110", "paced-70", "tall-t", "rate-step")
QRS_AMPLITUDES_MV = (0.15, 0.5, 1.0, 3.0)


@dataclass(frozen=True)
class StreamResult:
    """Analyzer output on one signal, chunk by chunk."""

    beats: np.ndarray
    # Sample count at the end of each chunk and the heart rate reported then.
    chunk_ends: np.ndarray
    rates_bpm: list[float | None]
    # Each alarm change with the sample count at the end of the chunk reporting it.
    alarms: list[tuple[AlarmChange, int]]


@dataclass(frozen=True)
class HeartRateResult:
    name: str
    settling_s: float | None  # None if the rate never stays within tolerance
    mean_error_bpm: float  # after settling
    max_error_bpm: float  # after settling


@dataclass(frozen=True)
class AlarmResult:
    scenario: str
    kind: EpisodeKind
    status: str  # "raised", "missed" or "not implemented"
    report_delay_s: float | None  # chunk end of the raise minus definition time
    onset_delay_s: float | None  # stated onset minus definition time


def stream(ecg: SyntheticEcg, chunk_s: float) -> StreamResult:
    """Feed the noisy synthetic lead to a fresh analyzer in chunks."""
    analyzer = EcgAnalyzer(ecg.sample_rate_hz)
    chunk = round(chunk_s * ecg.sample_rate_hz)
    signal = ecg.signal_mv
    beats: list[int] = []
    ends: list[int] = []
    rates: list[float | None] = []
    alarms: list[tuple[AlarmChange, int]] = []
    for begin in range(0, len(signal), chunk):
        result = analyzer.process(signal[begin : begin + chunk])
        end = min(begin + chunk, len(signal))
        beats.extend(result.beat_samples)
        ends.append(end)
        rates.append(result.heart_rate_bpm)
        alarms.extend((change, end) for change in result.alarms)
    return StreamResult(
        np.asarray(beats, dtype=np.int64), np.asarray(ends), rates, alarms
    )


def evaluate_heart_rate(name: str, segments: tuple[Segment, ...]) -> HeartRateResult:
    """Measure settling after the last rate change and the error after settling."""
    ecg = synthesize(segments, SAMPLE_RATE_HZ, seed=SEED)
    result = stream(ecg, HEART_RATE_CHUNK_S)
    change_sample = ecg.truth.rate_segments[-1][0]
    errors = []
    for end, rate in zip(result.chunk_ends, result.rates_bpm, strict=True):
        if end <= change_sample:
            continue
        expected = ecg.truth.nominal_rate_bpm(int(end) - 1)
        assert expected is not None  # the heart-rate cases have no beat-free segment
        errors.append((int(end), np.inf if rate is None else abs(rate - expected)))
    tolerance = [
        max(RATE_TOLERANCE_BPM, RATE_TOLERANCE_FRACTION * segments[-1].rate_bpm)
    ] * len(errors)
    settled_at = _settled_index([e for _, e in errors], tolerance)
    if settled_at is None:
        return HeartRateResult(name, None, np.nan, np.nan)
    after = np.array([error for _, error in errors[settled_at:]])
    settling_s = (errors[settled_at][0] - change_sample) / SAMPLE_RATE_HZ
    return HeartRateResult(name, settling_s, float(after.mean()), float(after.max()))


def _settled_index(errors: list[float], tolerance: list[float]) -> int | None:
    """Return the first index from which every error stays within tolerance."""
    settled = None
    for index, (error, limit) in enumerate(zip(errors, tolerance, strict=True)):
        if error > limit:
            settled = None
        elif settled is None:
            settled = index
    return settled


def run_alarm_scenarios() -> dict[str, tuple[SyntheticEcg, StreamResult]]:
    """Stream every alarm scenario through a fresh analyzer."""
    results = {}
    for scenario in ALARM_SCENARIOS:
        ecg = build_scenario(scenario, SAMPLE_RATE_HZ, SEED)
        results[scenario] = (ecg, stream(ecg, ALARM_CHUNK_S))
    return results


def raised_kinds(results: dict[str, tuple[SyntheticEcg, StreamResult]]) -> set[str]:
    """Return every alarm kind raised in any scenario.

    The benchmark treats a kind the analyzer never raises, not even on its own
    episode, as not implemented, because EcgAnalyzer does not list its rules.
    """
    return {
        str(change.kind)
        for _, result in results.values()
        for change, _ in result.alarms
        if change.state == RAISED
    }


def evaluate_alarms(
    scenario: str, ecg: SyntheticEcg, result: StreamResult, implemented: set[str]
) -> tuple[list[AlarmResult], list[str]]:
    """Time each ground-truth episode's alarm; also list raises matching no episode."""
    raises = [(c, end) for c, end in result.alarms if c.state == RAISED]
    used: set[int] = set()
    outcomes = []
    for episode in ecg.truth.episodes:
        names = [n for n in ANALYZER_KIND_NAMES[episode.kind] if n in implemented]
        if not names:
            outcomes.append(
                AlarmResult(scenario, episode.kind, "not implemented", None, None)
            )
            continue
        match = _first_raise(raises, names, episode, used)
        if match is None:
            outcomes.append(AlarmResult(scenario, episode.kind, "missed", None, None))
            continue
        used.add(match)
        change, end = raises[match]
        outcomes.append(
            AlarmResult(
                scenario,
                episode.kind,
                "raised",
                (end - episode.definition_sample) / SAMPLE_RATE_HZ,
                (change.onset_sample - episode.definition_sample) / SAMPLE_RATE_HZ,
            )
        )
    unmatched = [
        _describe(c, end) for i, (c, end) in enumerate(raises) if i not in used
    ]
    return outcomes, unmatched


def _first_raise(
    raises: list[tuple[AlarmChange, int]],
    names: list[str],
    episode: Episode,
    used: set[int],
) -> int | None:
    """Return the index of the first unused raise of `names` reported in the episode."""
    latest = episode.end_sample + ALARM_MATCH_AFTER_END_S * SAMPLE_RATE_HZ
    for index, (change, end) in enumerate(raises):
        if index in used or str(change.kind) not in names:
            continue
        if episode.start_sample <= end <= latest:
            return index
    return None


def false_alarms(scenario: str) -> list[str]:
    """Return every alarm raised on a scenario whose ground truth has no episode."""
    ecg = build_scenario(scenario, SAMPLE_RATE_HZ, SEED)
    result = stream(ecg, ALARM_CHUNK_S)
    return [
        _describe(change, end)
        for change, end in result.alarms
        if change.state == RAISED
    ]


def _describe(change: AlarmChange, end: int) -> str:
    return f"{change.kind} at {end / SAMPLE_RATE_HZ:.1f} s"


def score_amplitude(amplitude_mv: float) -> BeatScore:
    """Score beat detection on a clean 60 s sinus rhythm with this R-wave height."""
    segments = (Segment(Rhythm.SINUS, 60.0, qrs_amplitude_mv=amplitude_mv),)
    ecg = synthesize(segments, SAMPLE_RATE_HZ, seed=SEED)
    result = stream(ecg, HEART_RATE_CHUNK_S)
    return score_beats(ecg.truth.beat_samples, result.beats, SAMPLE_RATE_HZ, 0.0)
