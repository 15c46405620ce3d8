"""QRS detection on MIT-BIH record 100 against its reference annotations."""

import time
import warnings
from pathlib import Path

import numpy as np
import pytest

from edge_agent.dsp.beats import QrsDetector

RECORD = Path(__file__).resolve().parents[2] / "firmware_sim" / "recordings" / "100"
# WFDB annotation symbols that mark beats. Others ('+' rhythm change, '~' noise,
# '|' isolated artefact, '"' comment) are not beats.
BEAT_SYMBOLS = set("NLRBAaJSVrFejnE/fQ?")
MATCH_WINDOW_S = 0.150
# The first 5 minutes are a learning period and are left out of the score.
SKIPPED_START_S = 300.0
# The last beat may end too close to the record's end to be confirmed.
SKIPPED_END_S = 0.5
MIN_SCORE = 0.995


def _wfdb():
    # wfdb 4.3 triggers a pandas 3.1 deprecation warning on import and in rdann.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The inplace keyword", category=DeprecationWarning
        )
        import wfdb
        import wfdb.processing
    return wfdb


@pytest.fixture(scope="module")
def record_100():
    wfdb = _wfdb()
    record = wfdb.rdrecord(str(RECORD), channel_names=["MLII"])
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="The inplace keyword", category=DeprecationWarning
        )
        annotation = wfdb.rdann(str(RECORD), "atr")
    is_beat = np.isin(annotation.symbol, sorted(BEAT_SYMBOLS))
    return record.p_signal[:, 0], float(record.fs), annotation.sample[is_beat]


def _detect_all(samples: np.ndarray, sample_rate_hz: float, chunk: int) -> np.ndarray:
    detector = QrsDetector(sample_rate_hz, mains_hz=60.0)
    beats: list[int] = []
    for begin in range(0, samples.size, chunk):
        beats.extend(detector.process(samples[begin : begin + chunk]))
    return np.array(beats, dtype=int)


def _score(
    reference: np.ndarray, detected: np.ndarray, sample_rate_hz: float, size: int
):
    first = SKIPPED_START_S * sample_rate_hz
    last = size - SKIPPED_END_S * sample_rate_hz
    reference = reference[(reference >= first) & (reference < last)]
    detected = detected[(detected >= first) & (detected < last)]
    comparison = _wfdb().processing.compare_annotations(
        reference, detected, round(MATCH_WINDOW_S * sample_rate_hz)
    )
    return comparison


@pytest.mark.parametrize("polarity", [1.0, -1.0], ids=["upright", "inverted"])
def test_record_100_sensitivity_and_predictivity(record_100, polarity: float) -> None:
    samples, sample_rate_hz, reference = record_100
    started = time.perf_counter()
    detected = _detect_all(polarity * samples, sample_rate_hz, round(sample_rate_hz))
    elapsed_s = time.perf_counter() - started
    result = _score(reference, detected, sample_rate_hz, samples.size)
    print(
        f"\nrecord 100 MLII ({'inverted' if polarity < 0 else 'upright'}): "
        f"Se {100 * result.sensitivity:.2f} %, +P "
        f"{100 * result.positive_predictivity:.2f} % (TP {result.tp}, FN {result.fn}, "
        f"FP {result.fp}); {samples.size} samples in {elapsed_s:.2f} s"
    )
    assert result.sensitivity >= MIN_SCORE
    assert result.positive_predictivity >= MIN_SCORE


def test_record_100_one_call_matches_chunks(record_100) -> None:
    samples, sample_rate_hz, _ = record_100
    head = samples[: round(120 * sample_rate_hz)]
    whole = _detect_all(head, sample_rate_hz, head.size)
    chunked = _detect_all(head, sample_rate_hz, 250)
    assert np.array_equal(whole, chunked)
