"""Readiness and stopping notifications to systemd over $NOTIFY_SOCKET.

The agent has its own copy: central and the agent ship separately and share only
`protocol`, and this protocol is one datagram.
"""

from __future__ import annotations

import logging
import os
import socket

logger = logging.getLogger(__name__)


def notify(state: str) -> bool:
    """Send one sd_notify state line; return False when not run by systemd."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]  # Linux abstract socket namespace
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.connect(address)
            sock.sendall(state.encode("utf-8"))
    except OSError as exc:
        logger.warning("could not notify systemd (%s): %s", state, exc)
        return False
    return True
