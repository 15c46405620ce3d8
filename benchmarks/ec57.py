"""Beat-by-beat comparison of QRS detections with reference annotations.

The rules follow ANSI/AAMI EC57: a detection matches a reference beat within 150 ms,
each beat matches at most once, only beat annotations count, and the first 5 minutes
are a learning period left out of the statistics.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

MATCH_WINDOW_S = 0.150
LEARNING_PERIOD_S = 300.0
# MIT-BIH annotation codes of beats (normal, bundle branch block, atrial and nodal
# premature, aberrant, ventricular, fusion, escape, paced, unclassifiable). Rhythm,
# noise and comment annotations are not beats.
BEAT_SYMBOLS = frozenset("NLRBAaJSVrFejnE/fQ?")


@dataclass(frozen=True)
class BeatScore:
    """Counts and timing of one detector against the reference beats."""

    true_positives: int
    false_negatives: int
    false_positives: int
    # Detection minus reference time of each matched beat, in milliseconds.
    offsets_ms: np.ndarray

    @property
    def sensitivity(self) -> float:
        """Fraction of reference beats that were detected."""
        found = self.true_positives + self.false_negatives
        return self.true_positives / found if found else float("nan")

    @property
    def positive_predictivity(self) -> float:
        """Fraction of detections that match a reference beat."""
        reported = self.true_positives + self.false_positives
        return self.true_positives / reported if reported else float("nan")

    @property
    def jitter_mean_ms(self) -> float:
        """Mean detection-minus-reference time of matched beats (ms)."""
        return float(np.mean(self.offsets_ms)) if len(self.offsets_ms) else np.nan

    @property
    def jitter_sd_ms(self) -> float:
        """Standard deviation of detection-minus-reference time (ms)."""
        return float(np.std(self.offsets_ms)) if len(self.offsets_ms) else np.nan


def beat_samples(samples: np.ndarray, symbols: list[str]) -> np.ndarray:
    """Return the sample indices of the annotations that are beats."""
    keep = [symbol in BEAT_SYMBOLS for symbol in symbols]
    return np.asarray(samples, dtype=np.int64)[np.asarray(keep, dtype=bool)]


def score_beats(
    reference: np.ndarray,
    detected: np.ndarray,
    sample_rate_hz: float,
    start_s: float = LEARNING_PERIOD_S,
) -> BeatScore:
    """Match detections to reference beats and count them from `start_s` on.

    A matched pair counts when its reference beat lies at or after `start_s`; an
    unmatched reference beat or detection counts when it does.
    """
    reference = np.sort(np.asarray(reference, dtype=np.int64))
    detected = np.sort(np.asarray(detected, dtype=np.int64))
    window = MATCH_WINDOW_S * sample_rate_hz
    start = start_s * sample_rate_hz
    pairs = _match(reference, detected, window)
    matched_reference = np.zeros(len(reference), dtype=bool)
    matched_detected = np.zeros(len(detected), dtype=bool)
    offsets = []
    for ref_index, det_index in pairs:
        matched_reference[ref_index] = True
        matched_detected[det_index] = True
        if reference[ref_index] >= start:
            offsets.append(detected[det_index] - reference[ref_index])
    counted_reference = reference >= start
    return BeatScore(
        true_positives=len(offsets),
        false_negatives=int(np.sum(counted_reference & ~matched_reference)),
        false_positives=int(np.sum((detected >= start) & ~matched_detected)),
        offsets_ms=np.asarray(offsets, dtype=float) * 1000.0 / sample_rate_hz,
    )


def _match(
    reference: np.ndarray, detected: np.ndarray, window: float
) -> list[tuple[int, int]]:
    """Pair each reference beat with the nearest free detection within `window`.

    Both arrays are sorted. A detection closer to the next reference beat is left
    for that beat, so one early detection cannot take its neighbour's match.
    """
    pairs = []
    det_index = 0
    for ref_index, beat in enumerate(reference):
        while det_index < len(detected) and detected[det_index] < beat - window:
            det_index += 1
        best = None
        candidate = det_index
        while candidate < len(detected) and detected[candidate] <= beat + window:
            if best is None or abs(detected[candidate] - beat) < abs(
                detected[best] - beat
            ):
                best = candidate
            candidate += 1
        if best is None:
            continue
        following = reference[ref_index + 1] if ref_index + 1 < len(reference) else None
        if following is not None and abs(detected[best] - following) < abs(
            detected[best] - beat
        ):
            continue
        pairs.append((ref_index, best))
        det_index = best + 1
    return pairs
