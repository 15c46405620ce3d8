"""The objects one running central process shares between requests and sockets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import asyncpg
from starlette.requests import HTTPConnection

from central.audit import AuditLog
from central.config import Settings
from central.device_links import DeviceLinks
from central.hub import EventHub

if TYPE_CHECKING:
    from central.ingest_writer import IngestWriter
from central.metrics import Counters


@dataclass
class Services:
    """Pool, audit log, event hub, counters and live device connections.

    The app's lifespan creates them.
    """

    settings: Settings
    pool: asyncpg.Pool
    audit: AuditLog
    hub: EventHub
    counters: Counters
    device_links: DeviceLinks = field(default_factory=DeviceLinks)
    ingest_writer: IngestWriter = field(init=False)

    def __post_init__(self) -> None:
        # Imported here because storage imports central.auth, which imports this module.
        from central.ingest_writer import IngestWriter

        self.ingest_writer = IngestWriter(self.pool, self.counters)


def services_of(connection: HTTPConnection) -> Services:
    """Return the services of the app serving this request or WebSocket."""
    services = getattr(connection.app.state, "services", None)
    if services is None:
        raise RuntimeError("central services are not started; run the app's lifespan")
    return services
