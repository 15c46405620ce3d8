"""Bumble controllers joined on one in-process ``LocalLink`` instead of a radio."""

from __future__ import annotations

from bumble.controller import Controller
from bumble.device import Device
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink


class VirtualRadio:
    """One shared link; every device made here can scan and connect to the others."""

    def __init__(self) -> None:
        self.link = LocalLink()

    def make_device(self, name: str, address: str) -> Device:
        """Create a powered-off bumble device with its own controller on the link.

        ``address`` (``"F1:F1:F1:F1:F1:F1"``) is used both as the public address and
        as the random address the device advertises with.
        """
        controller = Controller(name, link=self.link, public_address=address)
        host = Host(controller, AsyncPipeSink(controller))
        return Device(name=name, address=Address(address), host=host)
