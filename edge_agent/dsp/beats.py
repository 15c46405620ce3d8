"""Streaming QRS detector in the Pan-Tompkins family.

The front end (band-pass, derivative, squaring, moving-window integration) runs
vectorised over each chunk. Candidate peaks are the local maxima of the integral that
dominate their neighbourhood, and only those candidates go through the Python decision
loop: adaptive signal and noise thresholds, a refractory period, T-wave discrimination
and search-back for missed beats.

Four rules go beyond the original algorithm. A candidate counts as a beat only if the
QRS peak-to-peak amplitude reaches an absolute floor, so noise on a flat line is never
counted however low the adaptive thresholds fall. Each peak can raise the signal
estimate only by a bounded step, so one large artefact cannot lift the threshold far
above the real beats. When search-back finds nothing, the thresholds are learnt again
from the candidates since the last beat. And a rejected candidate that resembles the
next beat is counted with it, so the wide first beat of a ventricular run is found.

Reference: Pan J, Tompkins WJ. A real-time QRS detection algorithm. IEEE Trans Biomed
Eng 32(3):230-236 (1985).
"""

import logging
import statistics
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import maximum_filter1d

from edge_agent.dsp.qrs_signals import (
    AMPLITUDE_SMOOTHING_S,
    QrsFrontEnd,
    SignalHistory,
    qrs_band_slope_share,
)

logger = logging.getLogger(__name__)

# A QRS must reach this peak-to-peak amplitude (mV) to count. Bedside monitors are
# expected to ignore complexes of 0.15 mV or less and to count those of 0.5 mV and
# more. 0.25 mV lies between and stays above 0.05 mV RMS white noise at 125 Hz.
MIN_QRS_AMPLITUDE_MV = 0.25
AMPLITUDE_HALF_WINDOW_S = 0.060

# Refractory period. Pan-Tompkins use 200 ms, but then a 300 bpm rhythm (RR 200 ms)
# loses every beat whose R peak lands one sample early. 180 ms caps the detectable rate
# at 333 bpm. The slope test against T waves (below) covers the shorter window.
REFRACTORY_S = 0.180

# A candidate must be the maximum of the integral within this distance on either side.
# It is also how long the detector waits after a peak before deciding on it. It must
# stay below the 200 ms RR interval of 300 bpm, or the smaller of two neighbouring
# beats would never become a candidate.
PEAK_NEIGHBOURHOOD_S = 0.160

# The integral peaks 0.10 to 0.14 s after the R wave (MIT-BIH record 100), so the R
# wave is sought in the ECG up to this far before the integral peak.
R_SEARCH_BEFORE_S = 0.250

# A fresh QRS lifts the integral above threshold within about 0.03 s of its R wave
# (measured on MIT-BIH record 100). The margin is generous so the beat horizon never
# runs ahead of an undecided beat.
INTEGRAL_RISE_S = 0.100

# Initial thresholds come from this much signal.
LEARNING_S = 2.0

# Candidates within 360 ms of the last beat whose maximum slope is below half of that
# beat's are T waves.
T_WAVE_WINDOW_S = 0.360
T_WAVE_SLOPE_RATIO = 0.5

# The first beat of a ventricular run is wide, so it can have under half the slope of
# the narrow beat before it and an integral below the threshold. Such a rejected
# candidate is confirmed when the next beat is accepted, if it reaches the search-back
# threshold and has at least these fractions of the next beat's slope and amplitude.
# The beats of a run resemble each other, while in sinus rhythm a T wave has under half
# the slope of the beat after it (at most 0.29 for 1.2 mV T waves on synthetic ECG).
# NOTE: an isolated wide premature beat is followed by a narrow beat, so it is still
# missed when its slope is below half of the preceding beat's.
PREMATURE_SLOPE_RATIO = 0.5
PREMATURE_AMPLITUDE_RATIO = 0.5
# A premature candidate must also have at least this share of its steepest ECG slope
# within R_SLOPE_HALF_WINDOW_S of its R wave in the QRS band. Measured shares: 0.43 to
# 0.78 for wide beats on synthetic ECG at 250 to 500 Hz, and at most 0.10 for
# muscle-noise bursts and 0.35 for electrode motion on MIT-BIH record 100 at -6 dB SNR.
MIN_QRS_BAND_SLOPE_SHARE = 0.4
R_SLOPE_HALF_WINDOW_S = 0.100

# Search back when no beat is found within 166 % of the recent RR interval, but never
# wait longer than 3 s after the last beat. With the 0.45 s decision delay, search-back
# has run before the 4 s asystole definition can be met.
SEARCH_BACK_RR_FACTOR = 1.66
SEARCH_BACK_MAX_S = 3.0
RR_HISTORY_BEATS = 8
DEFAULT_RR_S = 1.0

# Pan-Tompkins threshold updates: running estimates weighted 1/8 per new peak, or 1/4
# for beats found by search-back.
PEAK_WEIGHT = 0.125
SEARCH_BACK_PEAK_WEIGHT = 0.25
THRESHOLD_FRACTION = 0.25
SEARCH_BACK_THRESHOLD_RATIO = 0.5
# A new peak moves the signal estimate as if it were at most this many times the
# current estimate.
PEAK_CAP_RATIO = 2.0
# When search-back finds nothing, the signal estimate restarts from the largest
# QRS-like candidate, with the noise estimate at most this fraction of it, or it halves
# if there is no QRS-like candidate at all.
RELEARN_NOISE_RATIO = 0.25
THRESHOLD_DECAY = 0.5

# Longer chunks are processed in slices of this length.
MAX_STEP_S = 1.0

# History kept for learning, peak finding and the R-wave search. It must cover the
# learning period plus one slice, with the peak neighbourhood on both sides.
HISTORY_S = LEARNING_S + MAX_STEP_S + 2.0 * PEAK_NEIGHBOURHOOD_S + R_SEARCH_BEFORE_S


@dataclass(frozen=True)
class _Candidate:
    peak_index: int  # integral maximum
    r_index: int  # largest ECG deflection before it
    integral: float
    slope: float
    amplitude_mv: float


class QrsDetector:
    """Causal QRS detector fed with chunks of raw ECG samples in millivolts.

    `process` returns the absolute indices of R peaks confirmed during the call.
    Detection lags the R peak by about 0.4 s, and by up to about 3.5 s for a beat found
    by search-back. A premature beat confirmed by the next beat is returned together
    with that beat, so one RR interval later than other beats. Inverted leads work the
    same because only slope and peak-to-peak amplitude are used. NaN and infinite
    samples are replaced by the last finite value.
    Pacemaker pulses are removed before detection (see `edge_agent.dsp.pacing`).
    """

    def __init__(self, sample_rate_hz: float, mains_hz: float = 50.0) -> None:
        self._fs = float(sample_rate_hz)
        self._front_end = QrsFrontEnd(self._fs, mains_hz)
        self._history = SignalHistory(round(HISTORY_S * self._fs))
        self._neighbourhood = max(1, round(PEAK_NEIGHBOURHOOD_S * self._fs))
        self._refractory = round(REFRACTORY_S * self._fs)
        self._learned = False
        self._examined_until = 0  # integral peaks before this index are decided
        self._signal_peak = 0.0
        self._noise_peak = 0.0
        self._last_beat: _Candidate | None = None
        self._rr_intervals: list[int] = []
        self._noise_candidates: list[_Candidate] = []
        # Rejected candidates since the last beat that the next beat may confirm.
        self._premature_candidates: list[_Candidate] = []
        self._next_search_back = 0
        self._horizon = 0
        self._samples_fed = 0
        self.nonfinite_count = 0
        # Outputs of the latest `process` call, for display and beat classification.
        self.last_filtered_mv = np.zeros(0)
        self.last_pace_spike_samples: list[int] = []

    @property
    def samples_seen(self) -> int:
        """Number of samples fed so far."""
        return self._samples_fed

    @property
    def samples_filtered(self) -> int:
        """Number of samples that have passed the filters, a few behind `samples_seen`."""
        return self._history.end

    def filtered_window(self, begin: int, end: int) -> np.ndarray:
        """Return the filtered ECG (mV) for absolute samples [begin, end) still held."""
        return self._history.window("ecg", begin, end)

    @property
    def beat_horizon(self) -> int:
        """Absolute index before which every detectable beat has been reported.

        It trails `samples_seen` by 20 ms when nothing QRS-sized awaits a decision, and
        by up to about 0.45 s while something does. It trails further while a candidate
        waits for search-back, or for the next beat to confirm it as a premature beat.
        """
        return self._horizon

    def process(self, samples_mv: np.ndarray) -> list[int]:
        """Feed one chunk and return R-peak indices confirmed during this call."""
        samples = np.asarray(samples_mv, dtype=np.float64).ravel()
        self._samples_fed += samples.size
        filtered: list[np.ndarray] = []
        self.last_pace_spike_samples = []
        # The history holds only a few seconds, so long chunks go in as slices.
        step = round(MAX_STEP_S * self._fs)
        beats: list[int] = []
        for begin in range(0, samples.size, step):
            beats.extend(self._process_step(samples[begin : begin + step], filtered))
        self.last_filtered_mv = np.concatenate(filtered) if filtered else np.zeros(0)
        return beats

    def _process_step(self, samples: np.ndarray, filtered: list[np.ndarray]) -> list[int]:
        chunk = self._front_end.process(samples)
        self.nonfinite_count += chunk.nonfinite_count
        self.last_pace_spike_samples.extend(chunk.pace_spike_samples)
        filtered.append(chunk.ecg)
        self._history.append(chunk)
        if not self._learned:
            if self._history.end < round(LEARNING_S * self._fs):
                return []
            self._learn_thresholds()
        beats: list[int] = []
        decided_until = self._history.end - self._neighbourhood
        for candidate in self._find_candidates(decided_until):
            beats.extend(self._search_back_until(candidate.r_index))
            beats.extend(self._classify(candidate))
        self._examined_until = max(self._examined_until, decided_until)
        r_search = round(R_SEARCH_BEFORE_S * self._fs)
        beats.extend(self._search_back_until(self._examined_until - r_search))
        self._update_horizon()
        return beats

    def _learn_thresholds(self) -> None:
        integral = self._history.window("integral", 0, self._history.end)
        self._signal_peak = 0.5 * float(np.max(integral))
        self._noise_peak = 0.5 * float(np.mean(integral))
        self._next_search_back = self._search_back_deadline()
        self._learned = True

    def _threshold(self) -> float:
        spread = self._signal_peak - self._noise_peak
        return self._noise_peak + THRESHOLD_FRACTION * spread

    def _find_candidates(self, decided_until: int) -> list[_Candidate]:
        begin = self._examined_until
        if decided_until <= begin:
            return []
        margin = self._neighbourhood + 1
        first = max(self._history.start, begin - margin)
        integral = self._history.window("integral", first, decided_until + margin)
        dominant = maximum_filter1d(integral, size=2 * self._neighbourhood + 1)
        rising = np.zeros(integral.size, dtype=bool)
        rising[1:-1] = (integral[1:-1] > integral[:-2]) & (
            integral[1:-1] >= integral[2:]
        )
        is_peak = rising & (integral >= dominant) & (integral > 0.0)
        offsets = np.flatnonzero(is_peak)
        peaks = offsets + first
        keep = (peaks >= begin) & (peaks < decided_until)
        return [self._describe(int(p)) for p in peaks[keep]]

    def _describe(self, peak_index: int) -> _Candidate:
        r_begin = peak_index - round(R_SEARCH_BEFORE_S * self._fs)
        ecg = self._history.window("ecg", r_begin, peak_index + 1)
        deflection = np.abs(ecg - np.median(ecg))
        r_index = max(r_begin, self._history.start) + int(np.argmax(deflection))
        half = round(AMPLITUDE_HALF_WINDOW_S * self._fs)
        around_r = self._history.window("amplitude", r_index - half, r_index + half + 1)
        slope = self._history.window("slope", r_begin, peak_index + 1)
        integral = self._history.window("integral", peak_index, peak_index + 1)
        return _Candidate(
            peak_index=peak_index,
            r_index=r_index,
            integral=float(integral[0]),
            slope=float(np.max(slope)),
            amplitude_mv=float(np.ptp(around_r)),
        )

    def _classify(self, candidate: _Candidate) -> list[int]:
        last = self._last_beat
        if last is not None and candidate.r_index - last.r_index < self._refractory:
            return []
        threshold = self._threshold()
        if candidate.integral > threshold and self._is_qrs_like(candidate):
            return self._accept(candidate, PEAK_WEIGHT)
        if self._may_be_premature(candidate, threshold):
            self._premature_candidates.append(candidate)
        self._noise_peak += PEAK_WEIGHT * (candidate.integral - self._noise_peak)
        self._noise_candidates.append(candidate)
        return []

    def _may_be_premature(self, candidate: _Candidate, threshold: float) -> bool:
        if self._last_beat is None:
            return False
        if candidate.integral <= SEARCH_BACK_THRESHOLD_RATIO * threshold:
            return False
        if candidate.amplitude_mv < MIN_QRS_AMPLITUDE_MV:
            return False
        half = round(R_SLOPE_HALF_WINDOW_S * self._fs)
        share = qrs_band_slope_share(
            self._history, candidate.r_index - half, candidate.r_index + half, self._fs
        )
        return share >= MIN_QRS_BAND_SLOPE_SHARE

    def _is_qrs_like(self, candidate: _Candidate) -> bool:
        if candidate.amplitude_mv < MIN_QRS_AMPLITUDE_MV:
            return False
        last = self._last_beat
        if last is None:
            return True
        close = candidate.r_index - last.r_index < T_WAVE_WINDOW_S * self._fs
        return not (close and candidate.slope < T_WAVE_SLOPE_RATIO * last.slope)

    def _accept(self, candidate: _Candidate, weight: float) -> list[int]:
        """Record a beat, preceded by a premature beat that it confirms, if any."""
        beats: list[int] = []
        premature = self._confirmed_premature_beat(candidate)
        if premature is not None:
            beats.extend(self._record_beat(premature, PEAK_WEIGHT))
        beats.extend(self._record_beat(candidate, weight))
        return beats

    def _confirmed_premature_beat(self, beat: _Candidate) -> _Candidate | None:
        """Return the largest premature candidate that `beat` confirms, if any.

        A confirmed candidate lies at least a refractory period before `beat` and has
        the set fractions of its slope and amplitude, like consecutive ventricular
        beats.
        """
        confirmed = [
            c
            for c in self._premature_candidates
            if beat.r_index - c.r_index >= self._refractory
            and c.slope >= PREMATURE_SLOPE_RATIO * beat.slope
            and c.amplitude_mv >= PREMATURE_AMPLITUDE_RATIO * beat.amplitude_mv
        ]
        if not confirmed:
            return None
        return max(confirmed, key=lambda c: c.integral)

    def _record_beat(self, candidate: _Candidate, weight: float) -> list[int]:
        if self._last_beat is not None:
            self._rr_intervals.append(candidate.r_index - self._last_beat.r_index)
            del self._rr_intervals[:-RR_HISTORY_BEATS]
        # An artefact can be thousands of times larger than a QRS. Capping its share
        # keeps the threshold near the real beats that follow.
        peak = min(candidate.integral, PEAK_CAP_RATIO * self._signal_peak)
        if self._signal_peak <= 0.0:
            peak = candidate.integral
        self._signal_peak += weight * (peak - self._signal_peak)
        self._last_beat = candidate
        self._noise_candidates = [
            c
            for c in self._noise_candidates
            if c.r_index - candidate.r_index >= self._refractory
        ]
        self._premature_candidates = []
        self._next_search_back = self._search_back_deadline()
        return [candidate.r_index]

    def _search_back_deadline(self) -> int:
        start = self._last_beat.r_index if self._last_beat is not None else 0
        if self._rr_intervals:
            rr = float(statistics.median(self._rr_intervals))
        else:
            rr = DEFAULT_RR_S * self._fs
        wait = min(SEARCH_BACK_RR_FACTOR * rr, SEARCH_BACK_MAX_S * self._fs)
        return start + round(wait)

    def _search_back_until(self, limit: int) -> list[int]:
        """Run every search-back whose deadline is before `limit`."""
        beats: list[int] = []
        while self._next_search_back <= limit:
            deadline = self._next_search_back
            found = self._best_missed_beat(deadline)
            if found is not None:
                beats.extend(self._accept(found, SEARCH_BACK_PEAK_WEIGHT))
                continue
            self._relearn_thresholds(deadline)
            # Premature candidates expire here, because only a beat within the usual RR
            # range may confirm them.
            self._premature_candidates = [
                c for c in self._premature_candidates if c.r_index >= deadline
            ]
            self._next_search_back = deadline + round(DEFAULT_RR_S * self._fs)
            self._noise_candidates = [
                c
                for c in self._noise_candidates
                if deadline - c.r_index < SEARCH_BACK_MAX_S * self._fs
            ]
        return beats

    def _relearn_thresholds(self, deadline: int) -> None:
        """Reset the thresholds after a search-back that found nothing.

        Usually an artefact has inflated the signal estimate far above the real beats,
        which then all fall below the search-back threshold. Taking the largest
        QRS-like candidate as the new signal level lets the following beats through.
        """
        qrs_like = [
            c
            for c in self._noise_candidates
            if c.r_index < deadline and self._is_qrs_like(c)
        ]
        if not qrs_like:
            decayed = THRESHOLD_DECAY * self._signal_peak
            self._signal_peak = max(self._noise_peak, decayed)
            return
        self._signal_peak = max(c.integral for c in qrs_like)
        self._noise_peak = min(
            self._noise_peak, RELEARN_NOISE_RATIO * self._signal_peak
        )

    def _best_missed_beat(self, deadline: int) -> _Candidate | None:
        threshold = SEARCH_BACK_THRESHOLD_RATIO * self._threshold()
        eligible = [
            c
            for c in self._noise_candidates
            if c.r_index < deadline and c.integral > threshold and self._is_qrs_like(c)
        ]
        if not eligible:
            return None
        return max(eligible, key=lambda c: c.integral)

    def _update_horizon(self) -> None:
        if not self._learned:
            return
        end = self._history.end
        r_search = round(R_SEARCH_BEFORE_S * self._fs)
        undecided = self._history.window(
            "amplitude", self._examined_until - r_search, end
        )
        if np.ptp(undecided) < MIN_QRS_AMPLITUDE_MV:
            # Nothing QRS-sized in the undecided stretch, so no beat can hide there.
            # Only the amplitude smoothing delays a fresh QRS.
            horizon = end - round(AMPLITUDE_SMOOTHING_S * self._fs)
        else:
            horizon = end - round(INTEGRAL_RISE_S * self._fs)
            threshold = SEARCH_BACK_THRESHOLD_RATIO * self._threshold()
            integral = self._history.window("integral", self._examined_until, end)
            rising = np.flatnonzero(integral > threshold)
            if rising.size:
                horizon = min(horizon, self._examined_until + int(rising[0]) - r_search)
        threshold = SEARCH_BACK_THRESHOLD_RATIO * self._threshold()
        for candidate in self._noise_candidates:
            if candidate.integral > threshold and self._is_qrs_like(candidate):
                horizon = min(horizon, candidate.r_index)
        # A premature candidate may still be confirmed by the next beat.
        for candidate in self._premature_candidates:
            horizon = min(horizon, candidate.r_index)
        self._horizon = max(self._horizon, horizon)
