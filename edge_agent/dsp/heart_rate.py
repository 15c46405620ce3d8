"""Heart rate from the median of recent RR intervals."""

import logging
import statistics
from collections import deque

logger = logging.getLogger(__name__)

# The median of the last 8 RR intervals ignores a few ectopic or missed beats, yet
# follows a rate step once 5 new intervals have arrived: within 10 s down to 30 bpm.
RR_WINDOW_BEATS = 8
# Fewer intervals than this give no rate, because one odd beat would dominate it.
MIN_RR_INTERVALS = 4
# With no beat for this long the last rate is stale and the meter returns None.
STALE_AFTER_S = 4.0


class HeartRateMeter:
    """Heart rate in beats per minute from R-peak sample indices."""

    def __init__(
        self,
        sample_rate_hz: float,
        window_beats: int = RR_WINDOW_BEATS,
        min_intervals: int = MIN_RR_INTERVALS,
        stale_after_s: float = STALE_AFTER_S,
    ) -> None:
        if sample_rate_hz <= 0:
            raise ValueError(f"sample_rate_hz={sample_rate_hz} must be positive")
        if not 1 <= min_intervals <= window_beats:
            raise ValueError(
                f"min_intervals={min_intervals} must be between 1 and "
                f"window_beats={window_beats}"
            )
        self._sample_rate_hz = float(sample_rate_hz)
        self._min_intervals = min_intervals
        self._stale_after = stale_after_s * sample_rate_hz
        self._rr_intervals: deque[int] = deque(maxlen=window_beats)
        self._last_beat: int | None = None

    def add_beat(self, beat_sample: int) -> None:
        """Record an R peak. Beats must arrive in increasing sample order."""
        if self._last_beat is not None:
            interval = beat_sample - self._last_beat
            if interval <= 0:
                logger.warning(
                    "Ignored beat at sample %d: not after the previous beat at %d",
                    beat_sample,
                    self._last_beat,
                )
                return
            self._rr_intervals.append(interval)
        self._last_beat = beat_sample

    @property
    def bpm(self) -> float | None:
        """Rate from the recent RR intervals, or None until there are enough."""
        if len(self._rr_intervals) < self._min_intervals:
            return None
        median_rr = statistics.median(self._rr_intervals)
        return 60.0 * self._sample_rate_hz / median_rr

    def bpm_at(self, now_sample: int) -> float | None:
        """Return `bpm`, or None when the last beat is older than `stale_after_s`."""
        if self._last_beat is None or now_sample - self._last_beat > self._stale_after:
            return None
        return self.bpm
