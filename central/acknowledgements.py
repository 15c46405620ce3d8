"""Alarm acknowledgement from central: record it, audit it and send it to the device.

``POST /patients/{patient_id}/alarms/{alarm_id}/acknowledge`` needs a bearer token
and the same consent as a read of the patient. The alarm must be active, that is
its newest message from the device is the raise. Central stores one row per device
that raised the alarm and sends an ``alarm.acknowledge`` message over that device's
open ingest connection. A device without one receives the row when it next connects.

A row counts as delivered once the frame is handed to the connection. The device
does not confirm it, so a frame lost with a breaking connection is not resent.

An alarm is acknowledged once. A second request gets 409 naming who acknowledged it
and when, even when it races the first from another central process. It changes
nothing, and the attempt is audited as refused.
"""

from __future__ import annotations

import logging
from typing import NoReturn

import asyncpg
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from central.api import ApiError, alarm_id_of, patient_id_of
from central.audit import Actor
from central.auth import require_user
from central.consent import authorize_read
from central.device_links import DeviceLink
from central.services import Services, services_of
from protocol.messages import AlarmAcknowledge, encode

logger = logging.getLogger(__name__)

ACTION = "alarm.acknowledge"


async def acknowledge_alarm(request: Request) -> JSONResponse:
    """Store an acknowledgement and send it to the device now or when it connects.
    ---
    summary: Acknowledge an active alarm of a patient
    tags: [patients]
    security: [{bearerAuth: []}]
    parameters:
      - {$ref: "#/components/parameters/PatientId"}
      - {$ref: "#/components/parameters/AlarmId"}
    responses:
      "202": {description: Stored; delivery says whether the device has it yet}
      "401": {$ref: "#/components/responses/Unauthorized"}
      "403": {$ref: "#/components/responses/Forbidden"}
      "404": {$ref: "#/components/responses/NotFound"}
      "409": {$ref: "#/components/responses/Conflict"}
    """
    principal = await require_user(request)
    services = services_of(request)
    patient_id = patient_id_of(request)
    alarm_id = alarm_id_of(request)
    await authorize_read(services, principal, patient_id, ACTION)

    alarms = await _active_alarms(services.pool, patient_id, alarm_id)
    if not alarms:
        earlier = await _earlier_acknowledgement(
            services.pool, patient_id, alarm_id
        )
        if earlier is not None:
            await _reject_duplicate(services, principal.user_id, patient_id, earlier)
        raise ApiError(
            404,
            f"no active alarm {alarm_id!r} for patient {patient_id}; it may have "
            "cleared already",
            patient_id=patient_id,
            alarm_id=alarm_id,
        )

    acknowledged_by = principal.display_name or f"user {principal.user_id}"
    try:
        rows = await _record(services, principal.user_id, acknowledged_by, alarms)
    except AlreadyAcknowledged as exc:
        await _reject_duplicate(services, principal.user_id, patient_id, exc.earlier)
    deliveries = await _deliver_now(services, rows)
    logger.info(
        "alarm %s of patient %s acknowledged by user %s: %s",
        alarm_id, patient_id, principal.user_id, deliveries,
    )

    all_delivered = all(delivery["delivered"] for delivery in deliveries)
    body = {
        "patient_id": patient_id,
        "alarm_id": alarm_id,
        "kind": alarms[0]["kind"],
        "acknowledged_by": acknowledged_by,
        "acknowledged_at": rows[0]["at"].isoformat(),
        "delivery": "delivered" if all_delivered else "queued",
        "devices": deliveries,
    }
    return JSONResponse(body, status_code=202)


class AlreadyAcknowledged(Exception):
    """Another acknowledgement of the alarm is already stored."""

    def __init__(self, earlier: asyncpg.Record) -> None:
        super().__init__(earlier["alarm_id"])
        self.earlier = earlier


async def _earlier_acknowledgement(
    executor: asyncpg.Pool | asyncpg.Connection, patient_id: str, alarm_id: str
) -> asyncpg.Record | None:
    return await executor.fetchrow(
        """
        SELECT alarm_id, kind, acknowledged_by, user_id, at
        FROM alarm_acknowledgements WHERE patient_id = $1 AND alarm_id = $2
        ORDER BY id LIMIT 1
        """,
        patient_id,
        alarm_id,
    )


async def _reject_duplicate(
    services: Services, user_id: int, patient_id: str, earlier: asyncpg.Record
) -> NoReturn:
    services.counters.increment("acknowledgements.duplicate")
    logger.info(
        "user %s acknowledged alarm %s of patient %s again; already acknowledged by "
        "user %s at %s",
        user_id, earlier["alarm_id"], patient_id, earlier["user_id"],
        earlier["at"].isoformat(),
    )
    await services.audit.record(
        services.pool,
        Actor.user(user_id),
        ACTION,
        outcome="refused",
        patient_id=patient_id,
        detail={
            "alarm_id": earlier["alarm_id"],
            "reason": "already acknowledged",
            "acknowledged_by_user_id": earlier["user_id"],
        },
    )
    raise ApiError(
        409,
        f"alarm {earlier['alarm_id']!r} of patient {patient_id} was already "
        f"acknowledged by {earlier['acknowledged_by']} at "
        f"{earlier['at'].isoformat()}",
        patient_id=patient_id,
        alarm_id=earlier["alarm_id"],
        acknowledged_by=earlier["acknowledged_by"],
        acknowledged_at=earlier["at"].isoformat(),
    )


async def _record(
    services: Services,
    user_id: int,
    acknowledged_by: str,
    alarms: list[asyncpg.Record],
) -> list[asyncpg.Record]:
    """Store one acknowledgement per device and its audit row in one transaction.

    Raise AlreadyAcknowledged, storing nothing, if the alarm has one already.
    """
    patient_id, alarm_id = alarms[0]["patient_id"], alarms[0]["alarm_id"]
    async with services.pool.acquire() as connection, connection.transaction():
        # Serialises acknowledgements of one alarm across every central process, so
        # of two concurrent requests exactly one stores its rows.
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
            f"alarm-acknowledgement/{patient_id}/{alarm_id}",
        )
        earlier = await _earlier_acknowledgement(connection, patient_id, alarm_id)
        if earlier is not None:
            raise AlreadyAcknowledged(earlier)
        rows = [
            await _insert(connection, alarm, user_id, acknowledged_by)
            for alarm in alarms
        ]
        await services.audit.record(
            connection,
            Actor.user(user_id),
            ACTION,
            patient_id=alarms[0]["patient_id"],
            detail={
                "alarm_id": alarms[0]["alarm_id"],
                "kind": alarms[0]["kind"],
                "device_ids": [alarm["device_id"] for alarm in alarms],
            },
        )
    return rows


async def _deliver_now(
    services: Services, rows: list[asyncpg.Record]
) -> list[dict[str, object]]:
    deliveries: list[dict[str, object]] = []
    for row in rows:
        link = services.device_links.get(row["device_id"])
        delivered = link is not None and await send_acknowledgement(
            services, link, row
        )
        deliveries.append({"device_id": row["device_id"], "delivered": delivered})
    return deliveries


async def _active_alarms(
    pool: asyncpg.Pool, patient_id: str, alarm_id: str
) -> list[asyncpg.Record]:
    # Alarm ids are unique per device, so more than one row means that several
    # devices of this patient raised an alarm with the same id.
    return await pool.fetch(
        """
        SELECT device_id, alarm_id, patient_id, kind FROM (
            SELECT DISTINCT ON (device_id) device_id, alarm_id, patient_id, kind, state
            FROM alarms WHERE patient_id = $1 AND alarm_id = $2
            ORDER BY device_id, seq DESC
        ) newest
        WHERE state = 'raised'
        ORDER BY device_id
        """,
        patient_id,
        alarm_id,
    )


async def _insert(
    connection: asyncpg.Connection,
    alarm: asyncpg.Record,
    user_id: int,
    acknowledged_by: str,
) -> asyncpg.Record:
    return await connection.fetchrow(
        """
        INSERT INTO alarm_acknowledgements
            (alarm_id, kind, device_id, patient_id, user_id, acknowledged_by)
        VALUES ($1, $2, $3, $4, $5, $6)
        RETURNING id, alarm_id, kind, device_id, acknowledged_by, at
        """,
        alarm["alarm_id"],
        alarm["kind"],
        alarm["device_id"],
        alarm["patient_id"],
        user_id,
        acknowledged_by,
    )


async def send_acknowledgement(
    services: Services, link: DeviceLink, row: asyncpg.Record
) -> bool:
    """Send one stored acknowledgement to its device; mark it delivered if sent."""
    message = AlarmAcknowledge(
        alarm_id=row["alarm_id"],
        kind=row["kind"],
        acknowledged_by=row["acknowledged_by"],
        acknowledged_at=row["at"],
    )
    if not await link.send_to_device(encode(message).decode()):
        return False
    await services.pool.execute(
        "UPDATE alarm_acknowledgements SET delivered_at = now() "
        "WHERE id = $1 AND delivered_at IS NULL",
        row["id"],
    )
    services.counters.increment("acknowledgements.delivered")
    return True


async def deliver_pending(services: Services, link: DeviceLink) -> int:
    """Send the device's undelivered acknowledgements, oldest first; return the count.

    A concurrent request may send the same row too, so a device can receive an
    acknowledgement twice. That is harmless because acknowledging is idempotent.
    """
    rows = await services.pool.fetch(
        """
        SELECT id, alarm_id, kind, device_id, acknowledged_by, at
        FROM alarm_acknowledgements
        WHERE device_id = $1 AND delivered_at IS NULL
        ORDER BY id
        """,
        link.device_id,
    )
    delivered = 0
    for row in rows:
        if not await send_acknowledgement(services, link, row):
            break
        delivered += 1
    if rows:
        logger.info(
            "sent %d of %d pending alarm acknowledgements to device %s",
            delivered, len(rows), link.device_id,
        )
    return delivered


routes = [
    Route(
        "/patients/{patient_id}/alarms/{alarm_id}/acknowledge",
        acknowledge_alarm,
        methods=["POST"],
    ),
]
