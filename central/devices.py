"""Device credentials and registry queries.

Device secrets are stored as Argon2id hashes. A device authenticates once per
connection with HTTP Basic (device id as user name, secret as password), so the
hash is verified per connection and never per message.
"""

from __future__ import annotations

import base64
import binascii
import logging
import re
import secrets
from dataclasses import dataclass

import asyncpg

from central.auth import hash_secret, verify_secret_async

logger = logging.getLogger(__name__)

Executor = asyncpg.Pool | asyncpg.Connection
DEVICE_ID_PATTERN = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
SECRET_BYTES = 32


class DeviceAuthError(Exception):
    """Rejected device connection; ``reason`` is safe to log and audit.

    ``rotated_out`` is True when the secret was the device's previous credential, so
    the caller proved it once held a valid one and may learn why it is rejected.
    """

    def __init__(
        self, claimed_id: str | None, reason: str, *, rotated_out: bool = False
    ) -> None:
        super().__init__(reason)
        self.claimed_id = claimed_id
        self.reason = reason
        self.rotated_out = rotated_out


@dataclass(frozen=True)
class DeviceLocation:
    """The bed a device is in now, and the patient in that bed."""

    bed_id: str | None
    patient_id: str | None


def parse_basic_credentials(authorization: str | None) -> tuple[str, str]:
    """Return (device_id, secret) from a Basic header; raise DeviceAuthError if bad."""
    if not authorization:
        raise DeviceAuthError(None, "missing Authorization header")
    scheme, _, encoded = authorization.partition(" ")
    if scheme.lower() != "basic":
        raise DeviceAuthError(None, f"expected Basic authentication, got {scheme!r}")
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise DeviceAuthError(None, "Basic credentials are not valid base64") from None
    device_id, colon, secret = decoded.partition(":")
    if not colon or not secret:
        raise DeviceAuthError(None, "Basic credentials must be device_id:secret")
    if not DEVICE_ID_PATTERN.match(device_id):
        raise DeviceAuthError(None, "device id in Basic credentials is malformed")
    return device_id, secret


async def authenticate_device(pool: asyncpg.Pool, authorization: str | None) -> str:
    """Return the id of the device these credentials belong to, or raise."""
    device_id, secret = parse_basic_credentials(authorization)
    row = await pool.fetchrow(
        "SELECT secret_hash, previous_secret_hash, retired_at FROM devices"
        " WHERE id = $1",
        device_id,
    )
    stored_hash = None if row is None else row["secret_hash"]
    # Verify even for unknown devices so timing does not reveal registered ids.
    matched = await verify_secret_async(stored_hash, secret)
    if row is None:
        raise DeviceAuthError(device_id, "unknown device")
    if not matched:
        previous_hash = row["previous_secret_hash"]
        if previous_hash is not None and await verify_secret_async(
            previous_hash, secret
        ):
            raise DeviceAuthError(
                device_id, "device credential was rotated out", rotated_out=True
            )
        raise DeviceAuthError(device_id, "wrong device secret")
    if row["retired_at"] is not None:
        raise DeviceAuthError(device_id, "device is retired")
    return device_id


def generate_secret() -> str:
    """Return a new random device secret (256 bits, URL-safe base64)."""
    return secrets.token_urlsafe(SECRET_BYTES)


# Generated secrets are far longer; this stops an empty or trivial one by mistake.
MIN_SECRET_LENGTH = 8


async def register_device(
    executor: Executor, device_id: str, bed_id: str | None, secret: str
) -> None:
    """Create or re-key a device bound to ``bed_id``; un-retire it if needed.

    Re-keying an existing device rotates its credential: the old secret is kept as
    ``previous_secret_hash`` only to recognise it, and no longer authenticates.
    """
    if not DEVICE_ID_PATTERN.match(device_id):
        raise ValueError(
            f"device id {device_id!r} must be 1-64 characters of A-Z a-z 0-9 . _ : -"
        )
    if len(secret) < MIN_SECRET_LENGTH:
        raise ValueError(f"a device secret must have at least {MIN_SECRET_LENGTH} characters")
    if bed_id is not None and not await executor.fetchval(
        "SELECT EXISTS (SELECT 1 FROM beds WHERE id = $1)", bed_id
    ):
        raise ValueError(f"bed {bed_id!r} not found; register devices to existing beds")
    await executor.execute(
        """
        INSERT INTO devices (id, secret_hash, bed_id) VALUES ($1, $2, $3)
        ON CONFLICT (id) DO UPDATE
        SET previous_secret_hash = devices.secret_hash,
            secret_hash = EXCLUDED.secret_hash, secret_rotated_at = now(),
            bed_id = EXCLUDED.bed_id, retired_at = NULL
        """,
        device_id,
        hash_secret(secret),
        bed_id,
    )
    logger.info("registered device %s in bed %s", device_id, bed_id)


async def locate_device(executor: Executor, device_id: str) -> DeviceLocation:
    """Return the device's bed and the patient now in it."""
    row = await executor.fetchrow(
        """
        SELECT d.bed_id, p.id AS patient_id
        FROM devices d LEFT JOIN patients p ON p.bed_id = d.bed_id
        WHERE d.id = $1
        """,
        device_id,
    )
    if row is None:
        return DeviceLocation(None, None)
    return DeviceLocation(row["bed_id"], row["patient_id"])


async def record_hello(
    executor: Executor, device_id: str, model: str, firmware: str
) -> None:
    await executor.execute(
        "UPDATE devices SET model = $2, firmware = $3 WHERE id = $1",
        device_id,
        model,
        firmware,
    )


async def touch_last_seen(executor: Executor, device_id: str) -> None:
    await executor.execute(
        "UPDATE devices SET last_seen_at = now() WHERE id = $1", device_id
    )


async def locate_devices(
    executor: Executor, device_ids: list[str]
) -> dict[str, DeviceLocation]:
    """Return the bed and patient of each device, as ``locate_device`` does, at once."""
    rows = await executor.fetch(
        """
        SELECT d.id, d.bed_id, p.id AS patient_id
        FROM devices d LEFT JOIN patients p ON p.bed_id = d.bed_id
        WHERE d.id = ANY($1::text[])
        """,
        device_ids,
    )
    found = {row["id"]: DeviceLocation(row["bed_id"], row["patient_id"]) for row in rows}
    return {device_id: found.get(device_id, DeviceLocation(None, None))
            for device_id in device_ids}


async def touch_last_seen_many(executor: Executor, device_ids: list[str]) -> None:
    await executor.execute(
        "UPDATE devices SET last_seen_at = now() WHERE id = ANY($1::text[])",
        device_ids,
    )
