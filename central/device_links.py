"""The registry of live device connections, so requests can send to a device."""

from __future__ import annotations

import logging
from typing import Protocol

logger = logging.getLogger(__name__)


class DeviceLink(Protocol):
    """An open ingest connection that can send a text frame to its device."""

    device_id: str

    async def send_to_device(self, text: str) -> bool:
        """Send one frame; return False if the connection is already closed."""
        ...

    async def disconnect(self, reason: str) -> None:
        """Close the connection because the device may no longer use it."""
        ...


class DeviceLinks:
    """The current ingest connection of each device, at most one per device id.

    A device that reconnects before central notices its old connection closing
    replaces the old entry, so sends go to the newest connection.
    """

    def __init__(self) -> None:
        self._links: dict[str, DeviceLink] = {}

    def register(self, link: DeviceLink) -> None:
        previous = self._links.get(link.device_id)
        if previous is not None and previous is not link:
            logger.info("device %s reconnected; the newer connection receives "
                        "central's messages", link.device_id)
        self._links[link.device_id] = link

    def unregister(self, link: DeviceLink) -> None:
        # A newer connection of the same device may already have replaced this one.
        if self._links.get(link.device_id) is link:
            del self._links[link.device_id]

    def get(self, device_id: str) -> DeviceLink | None:
        return self._links.get(device_id)

    def __len__(self) -> int:
        return len(self._links)
