"""Settings of the simulated board."""

from __future__ import annotations

import math
from dataclasses import dataclass

DEFAULT_BOARD_ID = "aura-sim-1"
FIRMWARE_VERSION = "aura-sim 0.1.0"

# About 0.1 s of samples per ECG frame keeps display latency low while the framing
# overhead stays near a quarter of the bytes at 360 Hz.
DEFAULT_FRAME_DURATION_S = 0.1
# An agent that connects mid-stream waits at most this long, in record time, to learn
# the sample format.
DEFAULT_HELLO_INTERVAL_S = 5.0
# How long a write may wait for the reader before the frame is dropped. Shorter than a
# second so a stalled reader does not push the whole stream far behind real time.
DEFAULT_WRITE_TIMEOUT_S = 0.5


@dataclass(frozen=True)
class BoardConfig:
    """Settings of the board's output, pacing and injected line faults.

    ``speed`` is the replay rate relative to real time; 0 sends as fast as the reader
    takes the data and never drops frames. Flat-line and HELLO times are record time,
    in seconds since the board started streaming. Garbage and CRC faults are off when
    their period is 0.
    """

    board_id: str = DEFAULT_BOARD_ID
    firmware_version: str = FIRMWARE_VERSION
    speed: float = 1.0
    frame_duration_s: float = DEFAULT_FRAME_DURATION_S
    hello_interval_s: float = DEFAULT_HELLO_INTERVAL_S
    flatline_at_s: float | None = None
    flatline_for_s: float | None = None
    garbage_every: int = 0
    garbage_bytes: int = 0
    corrupt_crc_every: int = 0
    write_timeout_s: float = DEFAULT_WRITE_TIMEOUT_S
    # Seed of the garbage bytes, so a failing test run can be replayed.
    seed: int | None = None

    def __post_init__(self) -> None:
        self._require(
            math.isfinite(self.speed) and self.speed >= 0, "speed", "finite and >= 0"
        )
        self._require(self.frame_duration_s > 0, "frame_duration_s", "> 0")
        self._require(self.hello_interval_s > 0, "hello_interval_s", "> 0")
        self._require(self.write_timeout_s > 0, "write_timeout_s", "> 0")
        self._require(self.garbage_every >= 0, "garbage_every", ">= 0")
        self._require(self.garbage_bytes >= 0, "garbage_bytes", ">= 0")
        self._require(self.corrupt_crc_every >= 0, "corrupt_crc_every", ">= 0")
        if self.garbage_every:
            self._require(
                self.garbage_bytes > 0, "garbage_bytes", "> 0 when garbage_every is set"
            )
        self._check_flatline()

    def _require(self, condition: bool, field: str, rule: str) -> None:
        if not condition:
            value = getattr(self, field)
            raise ValueError(f"invalid board setting {field}={value!r}: must be {rule}")

    def _check_flatline(self) -> None:
        at, duration = self.flatline_at_s, self.flatline_for_s
        if (at is None) != (duration is None):
            raise ValueError("flatline_at_s and flatline_for_s must be given together")
        if at is not None and duration is not None:
            self._require(at >= 0, "flatline_at_s", ">= 0")
            self._require(duration > 0, "flatline_for_s", "> 0")
