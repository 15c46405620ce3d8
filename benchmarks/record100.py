"""QRS detection on MIT-BIH record 100: the streaming pipeline against wfdb's XQRS."""

from __future__ import annotations

import logging
import time
import tracemalloc
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.ec57 import BeatScore, beat_samples, score_beats
from edge_agent.dsp.pipeline import EcgAnalyzer
from firmware_sim.synthetic import Noise, NoiseKind, make_noise

with warnings.catch_warnings():
    # wfdb 4.3 calls DataFrame.set_index(inplace=True), which pandas 3 deprecates
    # with a warning on import and in rdann. Only that message is silenced.
    warnings.filterwarnings(
        "ignore", message="The inplace keyword", category=DeprecationWarning
    )
    import wfdb
    import wfdb.processing

logger = logging.getLogger(__name__)

RECORD_PATH = (
    Path(__file__).resolve().parents[1] / "firmware_sim" / "recordings" / "100"
)
LEAD = "MLII"
CHUNK_S = 1.0
NOISE_SEED = 2015


@dataclass(frozen=True)
class Record:
    """One lead of a record in millivolts with its reference beat samples."""

    samples_mv: np.ndarray
    sample_rate_hz: float
    reference: np.ndarray

    @property
    def duration_s(self) -> float:
        """Length of the lead in seconds."""
        return len(self.samples_mv) / self.sample_rate_hz


@dataclass(frozen=True)
class DetectorRun:
    """Score and best wall time of one detector on one signal."""

    name: str
    score: BeatScore
    best_time_s: float


def load_record(minutes: float | None = None) -> Record:
    """Read lead MLII of record 100 and its beat annotations, optionally cut short."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The inplace keyword", category=DeprecationWarning
        )
        record = wfdb.rdrecord(str(RECORD_PATH), channel_names=[LEAD])
        annotation = wfdb.rdann(str(RECORD_PATH), "atr")
    fs = float(record.fs)
    samples = record.p_signal[:, 0].astype(np.float64)
    reference = beat_samples(annotation.sample, annotation.symbol)
    if minutes is not None:
        end = round(minutes * 60.0 * fs)
        samples = samples[:end]
        reference = reference[reference < end]
    return Record(samples, fs, reference)


def detect_with_pipeline(samples_mv: np.ndarray, fs: float) -> np.ndarray:
    """Run the streaming analyzer in CHUNK_S chunks and return its beat samples."""
    analyzer = EcgAnalyzer(fs)
    chunk = round(CHUNK_S * fs)
    beats: list[int] = []
    for begin in range(0, len(samples_mv), chunk):
        beats.extend(analyzer.process(samples_mv[begin : begin + chunk]).beat_samples)
    return np.asarray(beats, dtype=np.int64)


def detect_with_xqrs(samples_mv: np.ndarray, fs: float) -> np.ndarray:
    """Run wfdb's XQRS on the whole signal at once and return its QRS samples."""
    detector = wfdb.processing.XQRS(sig=samples_mv, fs=fs)
    detector.detect(verbose=False)
    return np.asarray(detector.qrs_inds, dtype=np.int64)


DETECTORS: dict[str, Callable[[np.ndarray, float], np.ndarray]] = {
    "pipeline": detect_with_pipeline,
    "xqrs": detect_with_xqrs,
}


def run_detector(
    name: str, record: Record, samples_mv: np.ndarray, repeats: int
) -> DetectorRun:
    """Score one detector and time it, keeping the best of `repeats` runs."""
    detect = DETECTORS[name]
    times = []
    detected = np.empty(0, dtype=np.int64)
    for _ in range(repeats):
        started = time.perf_counter()
        detected = detect(samples_mv, record.sample_rate_hz)
        times.append(time.perf_counter() - started)
    score = score_beats(record.reference, detected, record.sample_rate_hz)
    return DetectorRun(name, score, min(times))


def pipeline_peak_memory_bytes(record: Record) -> int:
    """Return the tracemalloc peak of one pipeline run over the record."""
    tracemalloc.start()
    try:
        detect_with_pipeline(record.samples_mv, record.sample_rate_hz)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak


def noisy_copy(record: Record, kind: NoiseKind, snr_db: float) -> np.ndarray:
    """Return the lead with one noise component added at `snr_db`."""
    rng = np.random.default_rng(NOISE_SEED)
    noise = make_noise(
        record.samples_mv, [Noise(kind, snr_db)], record.sample_rate_hz, rng
    )
    return record.samples_mv + noise
