"""The central ASGI application: routes, error handlers and the lifespan.

At start the lifespan starts the embedded database when no DATABASE_URL is set. It
then opens the pool, applies migrations and creates the shared services. At
shutdown it closes the event hub and the pool, and releases the embedded database.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute

from central import (
    acknowledgements,
    admissions,
    assignments,
    auth_routes,
    break_glass,
    care,
    chat,
    chat_keys,
    dashboard,
    device_routes,
    fhir,
    observations,
    openapi,
    patient_data,
    patients,
    restrictions,
    waveforms,
)
from central.api import (
    ApiError,
    api_error_handler,
    http_error_handler,
    internal_error_handler,
)
from central.audit import AuditLog
from central.config import Settings, log_startup_warnings
from central.db.embedded import EmbeddedDatabase, start_embedded
from central.db.migrations import apply_migrations
from central.db.pool import database_is_up, open_pool
from central.device_registry import RegistryError
from central.escalation import run_escalations
from central.events import events_endpoint
from central.hub import EventHub
from central.ingest import ingest_endpoint
from central.metrics import Counters
from central.redis_hub import hub_for
from central.services import Services, services_of
from central.systemd import notify

logger = logging.getLogger(__name__)

POOL_CLOSE_TIMEOUT_S = 10.0


async def health(request: Request) -> JSONResponse:
    """Report database and Redis reachability and the counters; no authentication.

    Only a database outage makes this a 503: without Redis an instance still serves
    its own beds and dashboards, so a load balancer should keep sending it traffic.
    ---
    summary: Database and Redis state and counters
    tags: [meta]
    responses:
      "200": {description: The database is reachable (Redis may be down)}
      "503": {description: The database is down}
    """
    services = services_of(request)
    database_ok = await database_is_up(services.pool)
    redis_status = services.hub.relay_status()
    body = {
        "status": "ok" if database_ok and redis_status != "down" else "degraded",
        "database": "ok" if database_ok else "down",
        "redis": redis_status,
        "counters": services.counters.snapshot(),
    }
    return JSONResponse(body, status_code=200 if database_ok else 503)


async def metrics(request: Request) -> JSONResponse:
    """Return every counter as a JSON object.
    ---
    summary: Every counter by name
    tags: [meta]
    responses:
      "200": {description: Counter values by name}
    """
    return JSONResponse(services_of(request).counters.snapshot())


async def _open_database(settings: Settings) -> tuple[str, EmbeddedDatabase | None]:
    if settings.database_url is not None:
        return settings.database_url, None
    embedded = await asyncio.to_thread(start_embedded, settings.pgdata)
    return embedded.uri, embedded


async def _close_pool(services: Services) -> None:
    try:
        await asyncio.wait_for(services.pool.close(), POOL_CLOSE_TIMEOUT_S)
    except TimeoutError:
        logger.warning(
            "database connections still busy after %.0f s; terminating them",
            POOL_CLOSE_TIMEOUT_S,
        )
        services.pool.terminate()


async def _stop_task(task: asyncio.Task[None] | None) -> None:
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    except Exception:
        # A background task that failed must not stop the shutdown; log why it did.
        logger.exception("background task %s failed", task.get_name())


def create_app(settings: Settings, *, hub: EventHub | None = None) -> Starlette:
    """Build the application; nothing is opened until its lifespan starts."""

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log_startup_warnings(settings)
        dsn, embedded = await _open_database(settings)
        try:
            counters = Counters()
            services = Services(
                settings=settings,
                pool=await open_pool(dsn),
                audit=AuditLog(settings.audit_enabled),
                hub=hub if hub is not None else hub_for(settings, counters),
                counters=counters,
            )
            escalations: asyncio.Task[None] | None = None
            try:
                await services.hub.start()
                async with services.pool.acquire() as connection:
                    await apply_migrations(connection)
                app.state.services = services
                escalations = asyncio.create_task(run_escalations(services))
                logger.info("central ready")
                # uvicorn binds its socket right after the lifespan starts up.
                notify("READY=1")
                yield
            finally:
                notify("STOPPING=1")
                await _stop_task(escalations)
                services.hub.close()
                await services.hub.wait_closed()
                await _close_pool(services)
        finally:
            if embedded is not None:
                await asyncio.to_thread(embedded.release)
        logger.info("central stopped")

    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        *auth_routes.routes,
        *patients.routes,
        *patient_data.routes,
        *care.routes,
        *acknowledgements.routes,
        *admissions.routes,
        *assignments.routes,
        *restrictions.routes,
        *break_glass.routes,
        *observations.routes,
        *waveforms.routes,
        *chat_keys.routes,
        *chat.routes,
        *dashboard.routes,
        *device_routes.routes,
        *fhir.routes,
        *openapi.routes,
        WebSocketRoute("/ingest", ingest_endpoint),
        WebSocketRoute("/events", events_endpoint),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            ApiError: api_error_handler,
            RegistryError: device_routes.registry_error_handler,
            HTTPException: http_error_handler,
            Exception: internal_error_handler,
        },
    )
