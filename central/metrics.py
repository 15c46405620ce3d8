"""In-process counters shown at /health and /metrics, and a rate limit for logs."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter


class Counters:
    """Named monotonic counters; names look like ``ingest.rejected.seq``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Counter[str] = Counter()

    def increment(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._values[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._values[name]

    def snapshot(self) -> dict[str, int]:
        """Return a sorted copy of every counter."""
        with self._lock:
            return dict(sorted(self._values.items()))


class RateLimitedLog:
    """Log a repeated condition at most once per interval per key.

    The first occurrence is logged at once; later ones within ``interval_s`` are
    counted, and the count is appended to the next message that gets through.
    """

    def __init__(self, logger: logging.Logger, interval_s: float = 10.0) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._last: dict[object, float] = {}
        self._suppressed: Counter[object] = Counter()

    def warning(self, key: object, message: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval_s:
            self._suppressed[key] += 1
            return
        self._last[key] = now
        suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message += " (%d similar messages suppressed)"
            args = (*args, suppressed)
        self._logger.warning(message, *args)
