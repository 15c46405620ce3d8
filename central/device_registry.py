"""The device registry: register, re-key, bind, unbind and retire devices; their health.

Biomedical engineers use it through ``aura-central devices ...`` and the REST routes
in ``central.device_routes``. Every change is written together with its audit row in
one transaction, so no change is stored without its audit record. A secret is
returned once to the caller and stored only as an Argon2id hash; it is never logged
or audited.
"""

from __future__ import annotations

import asyncio
import logging
import re
from datetime import datetime
from typing import Any

import asyncpg

from central.audit import Actor, AuditLog
from central.auth import hash_secret
from central.devices import DEVICE_ID_PATTERN, generate_secret

logger = logging.getLogger(__name__)

Executor = asyncpg.Pool | asyncpg.Connection
SERIAL_NUMBER_PATTERN = re.compile(r"^[A-Za-z0-9._:/-]{1,64}$")
MAX_DESCRIPTION_LENGTH = 128
# IEEE 11073-10101 term of a battery's remaining charge in percent. The protocol does
# not carry it yet, so the battery stays null until a device sends this code.
BATTERY_CODE = "MDC_ATTR_VAL_BATT_CHARGE"

_DEVICE_COLUMNS = (
    """
    d.id, d.serial_number, d.model, d.firmware, d.bed_id, d.registered_at,
    d.last_seen_at, d.retired_at, d.secret_rotated_at,
    battery.value AS battery_percent, battery.measured_at AS battery_measured_at
    FROM devices d
    LEFT JOIN LATERAL (
        SELECT v.value, v.measured_at FROM vitals v
        WHERE v.device_id = d.id AND v.code = '"""
    + BATTERY_CODE
    + """'
        ORDER BY v.measured_at DESC LIMIT 1
    ) battery ON true
"""
)


class RegistryError(ValueError):
    """A registry request that cannot be carried out; ``status`` is its HTTP status."""

    status = 400


class DeviceNotFound(RegistryError):
    status = 404


class RegistryConflict(RegistryError):
    """The request conflicts with the device's state, such as a retired device."""

    status = 409


def validate_device_id(device_id: str) -> None:
    if not DEVICE_ID_PATTERN.match(device_id):
        raise RegistryError(
            f"device id {device_id[:80]!r} must be 1-64 characters of "
            "A-Z a-z 0-9 . _ : -"
        )


def _validate_description(name: str, value: str | None) -> None:
    if value is None:
        return
    if not 1 <= len(value) <= MAX_DESCRIPTION_LENGTH or not value.isprintable():
        raise RegistryError(
            f"{name} must be 1-{MAX_DESCRIPTION_LENGTH} printable characters, "
            f"got {value[:80]!r}"
        )


def _validate_serial(serial_number: str | None) -> None:
    if serial_number is not None and not SERIAL_NUMBER_PATTERN.match(serial_number):
        raise RegistryError(
            f"serial number {serial_number[:80]!r} must be 1-64 characters of "
            "A-Z a-z 0-9 . _ : / -"
        )


async def _require_bed(connection: asyncpg.Connection, bed_id: str) -> None:
    if not await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM beds WHERE id = $1)", bed_id
    ):
        raise RegistryError(
            f"bed {bed_id[:80]!r} not found; bind devices to existing beds"
        )


async def _lock_device(
    connection: asyncpg.Connection, device_id: str
) -> asyncpg.Record:
    validate_device_id(device_id)
    row = await connection.fetchrow(
        "SELECT id, bed_id, retired_at FROM devices WHERE id = $1 FOR UPDATE", device_id
    )
    if row is None:
        raise DeviceNotFound(f"device {device_id!r} not found")
    return row


def _require_in_service(row: asyncpg.Record, action: str) -> None:
    if row["retired_at"] is not None:
        raise RegistryConflict(
            f"device {row['id']!r} is retired; cannot {action} a retired device"
        )


class DeviceRegistry:
    """Changes to the registry, each audited under ``actor``."""

    def __init__(self, pool: asyncpg.Pool, audit: AuditLog, actor: Actor) -> None:
        self.pool = pool
        self.audit = audit
        self.actor = actor

    async def register(
        self,
        device_id: str,
        *,
        serial_number: str | None = None,
        model: str | None = None,
        firmware: str | None = None,
        bed_id: str | None = None,
        rekey_existing: bool = False,
    ) -> str:
        """Create a device and return its secret.

        An existing id is a conflict, unless ``rekey_existing``: then that device gets
        a new secret (its old one stops working) and the given bed if any, and
        returns to service if it was retired.
        """
        validate_device_id(device_id)
        _validate_serial(serial_number)
        _validate_description("model", model)
        _validate_description("firmware", firmware)
        secret = generate_secret()
        secret_hash = await asyncio.to_thread(hash_secret, secret)
        try:
            async with self.pool.acquire() as connection, connection.transaction():
                created = await self._store_registration(
                    connection,
                    device_id,
                    secret_hash,
                    serial_number,
                    model,
                    firmware,
                    bed_id,
                    rekey_existing,
                )
        except asyncpg.UniqueViolationError:
            # Another request took the serial number between the check and the write.
            raise RegistryConflict(
                f"serial number {serial_number!r} is already registered"
            ) from None
        logger.info(
            "%s device %s in bed %s",
            "registered" if created else "re-keyed",
            device_id,
            bed_id,
        )
        return secret

    async def _store_registration(
        self,
        connection: asyncpg.Connection,
        device_id: str,
        secret_hash: str,
        serial_number: str | None,
        model: str | None,
        firmware: str | None,
        bed_id: str | None,
        rekey_existing: bool,
    ) -> bool:
        if bed_id is not None:
            await _require_bed(connection, bed_id)
        owner = None
        if serial_number is not None:
            owner = await connection.fetchval(
                "SELECT id FROM devices WHERE serial_number = $1", serial_number
            )
        if owner is not None and owner != device_id:
            raise RegistryConflict(
                f"serial number {serial_number!r} is already registered to "
                f"device {owner!r}"
            )
        created = await connection.fetchval(
            """
            INSERT INTO devices (id, secret_hash, serial_number, model, firmware,
                                 bed_id)
            VALUES ($1, $2, $3, $4, $5, $6)
            ON CONFLICT (id) DO NOTHING
            RETURNING true
            """,
            device_id,
            secret_hash,
            serial_number,
            model,
            firmware,
            bed_id,
        )
        if not created and not rekey_existing:
            raise RegistryConflict(
                f"device {device_id!r} is already registered; rotate its "
                "credential instead"
            )
        if not created:
            await connection.execute(
                """
                UPDATE devices
                SET previous_secret_hash = secret_hash, secret_hash = $2,
                    secret_rotated_at = now(), bed_id = coalesce($3, bed_id),
                    retired_at = NULL,
                    serial_number = coalesce($4, serial_number),
                    model = coalesce($5, model),
                    firmware = coalesce($6, firmware)
                WHERE id = $1
                """,
                device_id,
                secret_hash,
                bed_id,
                serial_number,
                model,
                firmware,
            )
        await self._audit(
            connection,
            "device.register",
            device_id,
            serial_number=serial_number,
            model=model,
            firmware=firmware,
            bed_id=bed_id,
            rekeyed=not created,
        )
        return bool(created)

    async def rotate_credential(self, device_id: str) -> str:
        """Replace the device's secret and return the new one.

        The old secret stops authenticating at once; a device still using it is
        told its credential was rotated.
        """
        secret = generate_secret()
        secret_hash = await asyncio.to_thread(hash_secret, secret)
        async with self.pool.acquire() as connection, connection.transaction():
            row = await _lock_device(connection, device_id)
            _require_in_service(row, "rotate the credential of")
            await connection.execute(
                """
                UPDATE devices
                SET previous_secret_hash = secret_hash, secret_hash = $2,
                    secret_rotated_at = now()
                WHERE id = $1
                """,
                device_id,
                secret_hash,
            )
            await self._audit(connection, "device.rotate_credential", device_id)
        logger.info("rotated the credential of device %s", device_id)
        return secret

    async def bind(self, device_id: str, bed_id: str) -> None:
        """Bind the device to ``bed_id``; its next messages belong to that bed."""
        async with self.pool.acquire() as connection, connection.transaction():
            row = await _lock_device(connection, device_id)
            _require_in_service(row, "bind")
            await _require_bed(connection, bed_id)
            await connection.execute(
                "UPDATE devices SET bed_id = $2 WHERE id = $1", device_id, bed_id
            )
            await self._audit(
                connection,
                "device.bind",
                device_id,
                bed_id=bed_id,
                previous_bed_id=row["bed_id"],
            )
        logger.info(
            "bound device %s to bed %s (was %s)", device_id, bed_id, row["bed_id"]
        )

    async def unbind(self, device_id: str) -> str | None:
        """Unbind the device from its bed; return the bed it was in, if any."""
        async with self.pool.acquire() as connection, connection.transaction():
            row = await _lock_device(connection, device_id)
            await connection.execute(
                "UPDATE devices SET bed_id = NULL WHERE id = $1", device_id
            )
            await self._audit(
                connection, "device.unbind", device_id, previous_bed_id=row["bed_id"]
            )
        logger.info("unbound device %s from bed %s", device_id, row["bed_id"])
        return row["bed_id"]

    async def retire(self, device_id: str) -> None:
        """Retire the device: it is unbound and can no longer connect."""
        async with self.pool.acquire() as connection, connection.transaction():
            row = await _lock_device(connection, device_id)
            _require_in_service(row, "retire")
            await connection.execute(
                "UPDATE devices SET retired_at = now(), bed_id = NULL WHERE id = $1",
                device_id,
            )
            await self._audit(
                connection, "device.retire", device_id, previous_bed_id=row["bed_id"]
            )
        logger.info("retired device %s", device_id)

    async def _audit(
        self, connection: asyncpg.Connection, action: str, device_id: str, **detail: Any
    ) -> None:
        await self.audit.record(
            connection, self.actor, action, detail={"device_id": device_id, **detail}
        )


async def list_devices(
    executor: Executor, include_retired: bool
) -> list[dict[str, Any]]:
    """Return every device (in service only, unless ``include_retired``) by id."""
    rows = await executor.fetch(
        f"SELECT {_DEVICE_COLUMNS} WHERE $1 OR d.retired_at IS NULL ORDER BY d.id",
        include_retired,
    )
    return [device_health(row) for row in rows]


async def get_device(executor: Executor, device_id: str) -> dict[str, Any]:
    """Return one device with its health; raise DeviceNotFound."""
    validate_device_id(device_id)
    row = await executor.fetchrow(
        f"SELECT {_DEVICE_COLUMNS} WHERE d.id = $1", device_id
    )
    if row is None:
        raise DeviceNotFound(f"device {device_id!r} not found")
    return device_health(row)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def device_health(row: asyncpg.Record) -> dict[str, Any]:
    """Return the JSON form of a device row; ``connected`` is left for the caller."""
    battery = None
    if row["battery_percent"] is not None:
        battery = {
            "percent": row["battery_percent"],
            "measured_at": _iso(row["battery_measured_at"]),
        }
    return {
        "id": row["id"],
        "serial_number": row["serial_number"],
        "model": row["model"],
        "firmware": row["firmware"],
        "bed_id": row["bed_id"],
        "registered_at": _iso(row["registered_at"]),
        "credential_rotated_at": _iso(row["secret_rotated_at"]),
        "retired_at": _iso(row["retired_at"]),
        "last_seen_at": _iso(row["last_seen_at"]),
        "battery": battery,
        "connected": None,
    }
