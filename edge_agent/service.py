"""systemd integration: readiness and stopping notifications over $NOTIFY_SOCKET."""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send one sd_notify state line (``READY=1``, ``STOPPING=1``); False if unmanaged."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        # A leading "@" names a socket in the Linux abstract namespace.
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        logger.warning("could not notify systemd (%s): %s", state, exc)
        return False
    return True


def watchdog_interval_s() -> float | None:
    """Return systemd's watchdog period for this process, or None when unwatched."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid != str(os.getpid())):
        return None
    try:
        return int(usec) / 1_000_000
    except ValueError:
        logger.warning("ignoring malformed WATCHDOG_USEC=%r", usec)
        return None
