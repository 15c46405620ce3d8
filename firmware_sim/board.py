"""The simulated bedside board: streams frames over a pseudo-terminal in real time."""

from __future__ import annotations

import logging
import os
import select
import threading
import time

from firmware_sim.config import BoardConfig
from firmware_sim.pty_port import PtyPort
from firmware_sim.sources import SampleSource
from firmware_sim.stream import Chunk, FrameStream
from protocol.board import HelloPayload

logger = logging.getLogger(__name__)

# Falling further behind the schedule than this (a suspended process, a long stall)
# restarts the schedule from now instead of sending the backlog in one burst.
MAX_LAG_S = 2.0
# After a non-looping source ends, how long to wait for the reader to take the last
# frames before closing the device.
DRAIN_TIMEOUT_S = 2.0
# On a stop request, how long the board waits for the reader to empty the pty.
DRAIN_ON_STOP_S = 0.5
_DRAIN_POLL_S = 0.02
_DRAIN_EMPTY_READINGS = 5
_JOIN_TIMEOUT_S = 5.0


class Board:
    """A sensor board that streams a sample source over a pseudo-terminal.

    ``open()`` creates the device and returns its path, ``start()`` starts streaming
    on a background thread (opening the device if needed), ``stop()`` ends streaming
    and closes the device. Counters: ``frames_sent`` and ``samples_sent`` (fully
    written), ``frames_dropped`` and ``bytes_dropped`` (not written because the
    reader did not keep up), ``garbage_bytes_sent`` and ``frames_corrupted``
    (injected faults).
    """

    def __init__(self, source: SampleSource, config: BoardConfig | None = None) -> None:
        self.config = config or BoardConfig()
        self._stream = FrameStream(source, self.config)
        self._port: PtyPort | None = None
        self._thread: threading.Thread | None = None
        self._finished = threading.Event()
        self._stop_requested = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._stalled = False
        self._stall_drops = 0
        self.frames_sent = 0
        self.samples_sent = 0
        self.frames_dropped = 0
        self.bytes_dropped = 0
        self.garbage_bytes_sent = 0
        self.frames_corrupted = 0
        # The error that ended streaming early, if any.
        self.error: Exception | None = None

    @property
    def device_path(self) -> str | None:
        """Path of the serial device readers open, once ``open()`` has run."""
        return None if self._port is None else self._port.device_path

    @property
    def hello(self) -> HelloPayload:
        """The HELLO payload the board sends."""
        return self._stream.hello

    @property
    def flatline_forced(self) -> bool:
        """Whether ``set_flatline(True)`` is in effect."""
        return self._stream.flatline_forced

    def set_flatline(self, forced: bool) -> None:
        """Send zeros instead of the lead from the next frame on, or stop doing so."""
        self._stream.set_flatline(forced)

    def open(self) -> str:
        """Create the pseudo-terminal if needed and return its device path."""
        if self._port is None:
            self._port = PtyPort()
            logger.info("Board device is %s", self._port.device_path)
        return self._port.device_path

    def start(self) -> None:
        """Start streaming on a background thread."""
        if self._thread is not None:
            raise RuntimeError("board already started")
        self.open()
        self._thread = threading.Thread(
            target=self._run, name="board-stream", daemon=True
        )
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the streaming thread to end; safe to call from a signal handler."""
        self._stop_requested = True
        if self._wake_write < 0:
            return  # already stopped and closed
        try:
            os.write(self._wake_write, b"\0")
        except BlockingIOError:
            pass  # the pipe already contains a wake-up byte

    def wait(self, timeout: float | None = None) -> bool:
        """Wait until streaming ends; return False if ``timeout`` passed first."""
        return self._finished.wait(timeout)

    def stop(self) -> None:
        """Stop streaming and close the device and the wake-up pipe."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join(_JOIN_TIMEOUT_S)
            if self._thread.is_alive():
                logger.error("Board thread did not stop within %.0f s", _JOIN_TIMEOUT_S)
                return
        if self._port is not None:
            self._port.close()
        for fd in (self._wake_read, self._wake_write):
            if fd >= 0:
                os.close(fd)
        self._wake_read = self._wake_write = -1

    def __enter__(self) -> Board:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _run(self) -> None:
        logger.info(
            "Streaming lead %s at %g Hz, speed %s",
            self.hello.lead,
            self.hello.sample_rate_hz,
            "max" if self.config.speed == 0 else f"{self.config.speed:g}x",
        )
        try:
            self._stream_until_done()
        except OSError as error:
            self.error = error
            logger.error("Board stopped streaming after a write error: %s", error)
        except Exception as error:
            # Stored, so the command line exits non-zero instead of the failure passing
            # unnoticed in a background thread.
            self.error = error
            logger.exception("Board stopped streaming after an unexpected error")
        finally:
            logger.info(
                "Board sent %d frames, %d samples; dropped %d frames",
                self.frames_sent,
                self.samples_sent,
                self.frames_dropped,
            )
            self._finished.set()

    def _stream_until_done(self) -> None:
        anchor = time.monotonic()
        while not self._stop_requested:
            chunk = self._stream.next_chunk()
            if chunk is None:
                logger.info("Source ended; waiting for the reader to take the rest")
                self._drain(DRAIN_TIMEOUT_S, stop_early=True)
                return
            if self.config.speed > 0:
                anchor = self._pace(anchor, chunk.ready_at_s / self.config.speed)
                if self._stop_requested:
                    break
            self._send(chunk)
        # Frames counted as sent may still be in the pty. Give the reader a moment to
        # take them, so "sent" means delivered to a reader that keeps up.
        self._drain(DRAIN_ON_STOP_S, stop_early=False)

    def _pace(self, anchor: float, offset_s: float) -> float:
        """Sleep until ``anchor + offset_s``; return the anchor, moved after a lag."""
        deadline = anchor + offset_s
        lag = time.monotonic() - deadline
        if lag > MAX_LAG_S:
            logger.warning("Board fell %.1f s behind schedule; restarting it", lag)
            return anchor + lag
        self._sleep_until(deadline)
        return anchor

    def _sleep_until(self, deadline: float) -> None:
        timeout = deadline - time.monotonic()
        if timeout > 0:
            select.select([self._wake_read], [], [], timeout)

    def _send(self, chunk: Chunk) -> None:
        port = self._open_port()
        if self.config.speed == 0:
            deadline = None
        elif self._stalled:
            # Already known to be stalled: try once and drop at once, so the board
            # keeps its schedule while no reader takes data.
            deadline = time.monotonic()
        else:
            deadline = time.monotonic() + self.config.write_timeout_s
        written = port.write(chunk.data, deadline, self._wake_read)
        if written == len(chunk.data):
            self._count_sent(chunk)
        elif not self._stop_requested:
            self._count_dropped(chunk, written)

    def _count_sent(self, chunk: Chunk) -> None:
        self.frames_sent += chunk.frames
        self.samples_sent += chunk.samples
        self.garbage_bytes_sent += chunk.garbage_bytes
        self.frames_corrupted += chunk.corrupted_frames
        if self._stalled:
            logger.info(
                "Reader is taking data again after %d dropped frames", self._stall_drops
            )
            self._stalled = False
            self._stall_drops = 0

    def _count_dropped(self, chunk: Chunk, written: int) -> None:
        # A partly written chunk leaves a truncated frame on the line, which the
        # reader's parser discards when it resynchronises.
        self.frames_dropped += chunk.frames
        self.bytes_dropped += len(chunk.data) - written
        self._stall_drops += chunk.frames
        if not self._stalled:
            logger.warning(
                "Reader of %s did not take data within %.1f s; dropping frames until "
                "it does",
                self.device_path,
                self.config.write_timeout_s,
            )
            self._stalled = True

    def _drain(self, timeout_s: float, stop_early: bool) -> None:
        port = self._open_port()
        deadline = time.monotonic() + timeout_s
        # Just-written bytes pass through the kernel's tty buffer before the input
        # queue counts them, so one empty reading can come too early: require a few.
        empty_readings = 0
        while empty_readings < _DRAIN_EMPTY_READINGS and time.monotonic() < deadline:
            if stop_early and self._stop_requested:
                return
            empty_readings = empty_readings + 1 if port.unread_bytes() == 0 else 0
            time.sleep(_DRAIN_POLL_S)

    def _open_port(self) -> PtyPort:
        if self._port is None:
            raise RuntimeError("board device is not open")
        return self._port
