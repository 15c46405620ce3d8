"""Registers the marker that lets a quick run skip the longest fault rehearsals."""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "slow: a fault rehearsal that runs 40 s or more; deselect with -m 'not slow'",
    )
