"""Beat classification as normal or ventricular from QRS width and shape.

A beat is ventricular when its QRS is wider than 120 ms and its shape differs from the
running template of normal beats. The QRS is the stretch around the steepest point of
the filtered ECG where the slope stays above a fraction of that steepest slope.
"""

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

logger = logging.getLogger(__name__)

# A QRS wider than 120 ms is the usual ECG criterion for a ventricular origin (or a
# bundle branch block).
WIDE_QRS_S = 0.120
# The QRS is sought this far either side of the R peak.
QRS_SEARCH_S = 0.150
# The QRS spans the samples whose slope reaches this fraction of the steepest slope,
# joined across dips shorter than the gap.
SLOPE_FRACTION = 0.15
MAX_SLOPE_GAP_S = 0.012
# Slopes are taken after this moving average, so noise does not widen the QRS.
SLOPE_SMOOTHING_S = 0.010
# The template and the beat are compared over this much either side of the R peak.
TEMPLATE_HALF_WIDTH_S = 0.100
# Below this Pearson correlation with the template, a beat's shape differs.
MIN_TEMPLATE_CORRELATION = 0.8
# Each matching normal beat moves the template by this weight.
TEMPLATE_WEIGHT = 0.125


@dataclass(frozen=True)
class BeatShape:
    """QRS width and template match of one beat."""

    sample: int
    qrs_width_s: float
    correlation: float | None  # with the normal template, None before there is one
    ventricular: bool

    @property
    def matches_template(self) -> bool:
        """Whether the beat has the normal beats' narrow QRS and shape."""
        return (
            not self.ventricular
            and self.qrs_width_s <= WIDE_QRS_S
            and self.correlation is not None
            and self.correlation >= MIN_TEMPLATE_CORRELATION
        )


class BeatClassifier:
    """Classifier that keeps a running template of normal beats.

    `read_window(begin, end)` returns the filtered ECG for absolute samples
    [begin, end), such as `QrsDetector.filtered_window`.
    """

    def __init__(
        self, sample_rate_hz: float, read_window: Callable[[int, int], np.ndarray]
    ) -> None:
        self._fs = float(sample_rate_hz)
        self._read = read_window
        self._search = round(QRS_SEARCH_S * self._fs)
        self._half = round(TEMPLATE_HALF_WIDTH_S * self._fs)
        self._smoothing = max(1, round(SLOPE_SMOOTHING_S * self._fs))
        self._gap = max(1, round(MAX_SLOPE_GAP_S * self._fs))
        self._template: np.ndarray | None = None

    def classify(self, beat_sample: int) -> BeatShape:
        """Measure one beat and update the template if it is normal."""
        segment = self._read(beat_sample - self._search, beat_sample + self._search + 1)
        width_s = self._qrs_width_s(segment)
        shape = self._read(beat_sample - self._half, beat_sample + self._half + 1)
        correlation = self._correlation(shape)
        wide = width_s > WIDE_QRS_S
        differs = correlation is None or correlation < MIN_TEMPLATE_CORRELATION
        # NOTE: a rhythm with a wide QRS in every beat (bundle branch block) never
        # builds a template, so above 100 bpm it counts as ventricular tachycardia.
        ventricular = wide and differs
        if not wide and shape.size == 2 * self._half + 1:
            self._learn(shape, correlation)
        return BeatShape(beat_sample, width_s, correlation, ventricular)

    def _qrs_width_s(self, segment: np.ndarray) -> float:
        if segment.size < 3 * self._smoothing:
            return 0.0
        kernel = np.ones(self._smoothing) / self._smoothing
        slope = np.abs(np.diff(np.convolve(segment, kernel, mode="same")))
        # The moving average distorts the edges of the segment.
        slope[: self._smoothing] = 0.0
        slope[-self._smoothing :] = 0.0
        steepest = int(np.argmax(slope))
        steep = slope >= SLOPE_FRACTION * slope[steepest]
        first = last = steepest
        while True:
            earlier = np.flatnonzero(steep[max(0, first - self._gap) : first])
            if earlier.size == 0:
                break
            first = max(0, first - self._gap) + int(earlier[0])
        while True:
            later = np.flatnonzero(steep[last + 1 : last + 1 + self._gap])
            if later.size == 0:
                break
            last = last + 1 + int(later[-1])
        return (last - first + 1) / self._fs

    def _correlation(self, shape: np.ndarray) -> float | None:
        # Pearson correlation written out: np.corrcoef costs several times as much
        # for one pair of short vectors, and this runs once per beat.
        if self._template is None or shape.size != self._template.size:
            return None
        centred = shape - shape.mean()
        template = self._template - self._template.mean()
        norm = float(np.sqrt((centred @ centred) * (template @ template)))
        if norm == 0.0:
            return 0.0
        return float(centred @ template) / norm

    def _learn(self, shape: np.ndarray, correlation: float | None) -> None:
        if self._template is None:
            self._template = shape.copy()
        elif correlation is not None and correlation >= MIN_TEMPLATE_CORRELATION:
            self._template += TEMPLATE_WEIGHT * (shape - self._template)
