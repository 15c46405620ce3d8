"""A pseudo-terminal that looks like a serial device to the reader."""

from __future__ import annotations

import fcntl
import logging
import os
import select
import struct
import termios
import time
import tty

logger = logging.getLogger(__name__)


class PtyPort:
    """The board's end of a pseudo-terminal; readers open ``device_path``.

    The board keeps the slave side open itself, so the device exists and keeps its
    raw mode even while no reader has it open. The master side is non-blocking, so a
    reader that stops reading makes writes time out instead of hanging the board.
    """

    def __init__(self) -> None:
        master_fd, slave_fd = os.openpty()
        try:
            # Raw mode as on a real UART: no echo, no line editing, no CR/LF mapping.
            tty.setraw(slave_fd)
            os.set_blocking(master_fd, False)
            self.device_path = os.ttyname(slave_fd)
        except BaseException:
            os.close(master_fd)
            os.close(slave_fd)
            raise
        self._master_fd: int | None = master_fd
        self._slave_fd: int | None = slave_fd

    def write(self, data: bytes, deadline: float | None, wake_fd: int) -> int:
        """Write ``data``, waiting for the reader until the monotonic ``deadline``.

        ``None`` waits without limit. The wait also ends as soon as ``wake_fd``
        becomes readable. Returns the number of bytes written, which is less than
        ``len(data)`` when the wait ended first.
        """
        master_fd = self._require_open()
        view = memoryview(data)
        written = 0
        while written < len(view):
            try:
                written += os.write(master_fd, view[written:])
                continue
            except BlockingIOError:
                pass
            timeout = None if deadline is None else deadline - time.monotonic()
            if timeout is not None and timeout <= 0:
                break
            woken, _, _ = select.select([wake_fd], [master_fd], [], timeout)
            if woken:
                break
        return written

    def unread_bytes(self) -> int:
        """Bytes written but not yet read from the device."""
        slave_fd = self._require_open_slave()
        raw = fcntl.ioctl(slave_fd, termios.FIONREAD, struct.pack("i", 0))
        (count,) = struct.unpack("i", raw)
        return count

    def close(self) -> None:
        """Close both sides; readers then get end of file or an I/O error."""
        for fd in (self._master_fd, self._slave_fd):
            if fd is not None:
                os.close(fd)
        self._master_fd = None
        self._slave_fd = None

    def _require_open(self) -> int:
        if self._master_fd is None:
            raise OSError("pseudo-terminal is closed")
        return self._master_fd

    def _require_open_slave(self) -> int:
        if self._slave_fd is None:
            raise OSError("pseudo-terminal is closed")
        return self._slave_fd
