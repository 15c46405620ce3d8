"""The bedside sensor board on a serial line, read with pyserial without blocking.

The port is opened non-blocking and watched by the event loop, so a quiet sensor never
ties up a thread. A vanished device (unplugged, board rebooting) is reopened after a
delay; the frame parser's state is kept only within one open port.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import serial

from protocol.framing import Frame, FrameParser

logger = logging.getLogger(__name__)

READ_CHUNK_BYTES = 4096


class SerialBoardSource:
    """Reads frames from a serial port and hands each good frame to ``on_frame``."""

    def __init__(
        self, port: str, baudrate: int, on_frame: Callable[[Frame], None],
        reopen_delay_s: float = 2.0,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self._on_frame = on_frame
        self._reopen_delay_s = reopen_delay_s
        self.parser = FrameParser()
        self.opened = asyncio.Event()
        self.bytes_read = 0

    async def run(self) -> None:
        """Read until cancelled, reopening the port whenever it fails."""
        failures = 0
        while True:
            try:
                await self._read_port()
            except (serial.SerialException, OSError) as exc:
                # The first failure needs a person; the retries after it do not.
                log = logger.warning if failures == 0 or self.opened.is_set() else logger.debug
                log("sensor board on %s unavailable (%s); retrying every %.1f s",
                    self.port, exc, self._reopen_delay_s)
                failures = 0 if self.opened.is_set() else failures + 1
            self.opened.clear()
            await asyncio.sleep(self._reopen_delay_s)

    async def _read_port(self) -> None:
        loop = asyncio.get_running_loop()
        link = serial.Serial(self.port, self.baudrate, timeout=0)
        closed: asyncio.Future[None] = loop.create_future()
        self.parser = FrameParser()

        def on_readable() -> None:
            try:
                data = link.read(READ_CHUNK_BYTES)
            except (serial.SerialException, OSError) as exc:
                if not closed.done():
                    closed.set_exception(exc)
                return
            if not data:
                return
            self.bytes_read += len(data)
            for frame in self.parser.feed(data):
                self._on_frame(frame)

        loop.add_reader(link.fileno(), on_readable)
        logger.info("reading sensor board on %s at %d baud", self.port, self.baudrate)
        self.opened.set()
        try:
            await closed
        finally:
            loop.remove_reader(link.fileno())
            link.close()
