"""Counters and the rate limit for repeated warnings."""

from __future__ import annotations

import logging

import pytest

from central.metrics import Counters, RateLimitedLog


def test_counters_snapshot_sorted() -> None:
    counters = Counters()
    counters.increment("b")
    counters.increment("a", 3)
    assert counters.snapshot() == {"a": 3, "b": 1}
    assert counters.get("missing") == 0


def test_rate_limit_counts_suppressed(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [100.0]
    monkeypatch.setattr("central.metrics.time.monotonic", lambda: clock[0])
    limited = RateLimitedLog(logging.getLogger("test.rate"), interval_s=10.0)
    with caplog.at_level(logging.WARNING, logger="test.rate"):
        limited.warning("key", "slow client %s", "a")
        limited.warning("key", "slow client %s", "a")
        limited.warning("key", "slow client %s", "a")
        limited.warning("other", "slow client %s", "b")
        clock[0] += 11.0
        limited.warning("key", "slow client %s", "a")
    messages = [record.getMessage() for record in caplog.records]
    assert messages == [
        "slow client a",
        "slow client b",
        "slow client a (2 similar messages suppressed)",
    ]
