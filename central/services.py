"""The objects one running central process shares between requests and sockets."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from starlette.requests import HTTPConnection

from central.audit import AuditLog
from central.config import Settings
from central.hub import EventHub
from central.metrics import Counters


@dataclass
class Services:
    """Pool, audit log, event hub and counters, created by the app's lifespan."""

    settings: Settings
    pool: asyncpg.Pool
    audit: AuditLog
    hub: EventHub
    counters: Counters


def services_of(connection: HTTPConnection) -> Services:
    """Return the services of the app serving this request or WebSocket."""
    services = getattr(connection.app.state, "services", None)
    if services is None:
        raise RuntimeError("central services are not started; run the app's lifespan")
    return services
