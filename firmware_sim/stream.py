"""The board's output as bytes: HELLO and ECG frames with optional line faults.

This part is pure: it turns samples from a source into chunks of wire bytes, each
with the record time at which a real board would have them ready. Pacing and the
serial port live in ``firmware_sim.board``.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass

import numpy as np

from firmware_sim.config import BoardConfig
from firmware_sim.sources import SampleSource
from protocol.board import MAX_ECG_SAMPLES, EcgPayload, HelloPayload
from protocol.framing import CRC_SIZE, FrameType, encode_frame

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Chunk:
    """Bytes for one ECG block, with the HELLO and injected faults that go with it."""

    data: bytes
    # Record time in seconds when the block's last sample has been acquired.
    ready_at_s: float
    frames: int
    samples: int
    garbage_bytes: int
    corrupted_frames: int


class FrameStream:
    """Turn a sample source into framed bytes.

    A HELLO goes out before the first ECG block and again once ``hello_interval_s``
    of record time has passed since the last one. Each ECG block holds about
    ``frame_duration_s`` of samples. The sequence number counts every frame,
    including corrupted ones, as a board's frame counter would.
    """

    def __init__(self, source: SampleSource, config: BoardConfig) -> None:
        self._source = source
        self._config = config
        self.hello = HelloPayload(
            board_id=config.board_id,
            firmware_version=config.firmware_version,
            sample_rate_hz=source.sample_rate_hz,
            microvolts_per_count=source.microvolts_per_count,
            lead=source.lead,
        )
        self.samples_per_frame = _samples_per_frame(
            source.sample_rate_hz, config.frame_duration_s
        )
        self._flatline_window = _flatline_window(config, source.sample_rate_hz)
        self._hello_interval_samples = round(
            config.hello_interval_s * source.sample_rate_hz
        )
        self._next_hello_sample = 0
        self._next_sample = 0
        self._sequence = 0
        self._random = random.Random(config.seed)
        self.flatline_forced = False
        self._flatline_logged = False

    def set_flatline(self, forced: bool) -> None:
        """Force the lead flat (zeros) from the next block on, or end that."""
        # Only a flag assignment, so a signal handler may call this.
        self.flatline_forced = forced

    def next_chunk(self) -> Chunk | None:
        """Return the next block of bytes, or None when the source is exhausted."""
        samples = self._source.read(self.samples_per_frame)
        if len(samples) == 0:
            return None
        first = self._next_sample
        self._next_sample += len(samples)
        frames = []
        if first >= self._next_hello_sample:
            frames.append((FrameType.HELLO, self.hello.to_bytes()))
            self._next_hello_sample = first + self._hello_interval_samples
        ecg = EcgPayload(first, self._apply_flatline(first, samples).tolist())
        frames.append((FrameType.ECG, ecg.to_bytes()))
        return self._encode(frames, len(samples))

    def _apply_flatline(self, first: int, samples: np.ndarray) -> np.ndarray:
        self._log_forced_flatline_change(first)
        if self.flatline_forced:
            return np.zeros_like(samples)
        if self._flatline_window is None:
            return samples
        start, end = self._flatline_window
        low = min(max(start - first, 0), len(samples))
        high = min(max(end - first, 0), len(samples))
        if low < high:
            samples = samples.copy()
            samples[low:high] = 0
        if first <= start < first + len(samples):
            logger.info("Flat line from sample %d to %d", start, end)
        return samples

    def _log_forced_flatline_change(self, first: int) -> None:
        # Logged here and not in set_flatline(), because logging takes locks that a
        # signal handler must not wait on.
        if self.flatline_forced != self._flatline_logged:
            self._flatline_logged = self.flatline_forced
            state = "on" if self.flatline_forced else "off"
            logger.info("Forced flat line %s from sample %d", state, first)

    def _encode(self, frames: list[tuple[FrameType, bytes]], samples: int) -> Chunk:
        parts = []
        garbage_total = 0
        corrupted = 0
        for frame_type, payload in frames:
            self._sequence += 1
            frame = encode_frame(frame_type, self._sequence - 1, payload)
            if _every(self._config.corrupt_crc_every, self._sequence):
                frame = _corrupt_crc(frame)
                corrupted += 1
            parts.append(frame)
            if _every(self._config.garbage_every, self._sequence):
                garbage = self._random.randbytes(self._config.garbage_bytes)
                parts.append(garbage)
                garbage_total += len(garbage)
        return Chunk(
            data=b"".join(parts),
            ready_at_s=self._next_sample / self._source.sample_rate_hz,
            frames=len(frames),
            samples=samples,
            garbage_bytes=garbage_total,
            corrupted_frames=corrupted,
        )


def _every(period: int, count: int) -> bool:
    """Return whether item number ``count`` (from 1) falls on a ``period`` multiple."""
    return period > 0 and count % period == 0


def _corrupt_crc(frame: bytes) -> bytes:
    crc = bytearray(frame[-CRC_SIZE:])
    crc[0] ^= 0xFF
    return frame[:-CRC_SIZE] + bytes(crc)


def _samples_per_frame(sample_rate_hz: float, frame_duration_s: float) -> int:
    count = max(1, round(sample_rate_hz * frame_duration_s))
    if count > MAX_ECG_SAMPLES:
        raise ValueError(
            f"frame_duration_s={frame_duration_s} gives {count} samples per frame at "
            f"{sample_rate_hz:g} Hz, more than the {MAX_ECG_SAMPLES} an ECG frame holds"
        )
    return count


def _flatline_window(
    config: BoardConfig, sample_rate_hz: float
) -> tuple[int, int] | None:
    if config.flatline_at_s is None or config.flatline_for_s is None:
        return None
    start = round(config.flatline_at_s * sample_rate_hz)
    end = round((config.flatline_at_s + config.flatline_for_s) * sample_rate_hz)
    return start, end
