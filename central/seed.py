"""Demo data: one ward, one bed, one patient, two nurses and one bound device.

Nurse Ana is assigned to the bed for a 12-hour shift starting now, so she sees
whoever is admitted there. Nurse Ben has no assignment.

Running it again updates the same rows (passwords and the device secret are reset
to the given values), so it is safe to run before every demo.
"""

from __future__ import annotations

import logging

import asyncpg

from central.assignments import ensure_bed_assignment
from central.auth import ROLE_NURSE
from central.devices import register_device
from central.users import upsert_user

logger = logging.getLogger(__name__)

WARD_ID = "ward-a"
WARD_NAME = "Ward A"
BED_ID = "bed-1"
BED_LABEL = "Bed 1"
PATIENT_ID = "P-0001"
PATIENT_NAME = "Demo Patient One"
ASSIGNED_NURSE = "nurse.ana"
UNASSIGNED_NURSE = "nurse.ben"


async def seed_demo(
    pool: asyncpg.Pool, device_id: str, device_secret: str, password: str
) -> dict[str, object]:
    """Create or update the demo data; return a description of what exists."""
    async with pool.acquire() as connection, connection.transaction():
        await connection.execute(
            """
            INSERT INTO wards (id, name) VALUES ($1, $2)
            ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name
            """,
            WARD_ID,
            WARD_NAME,
        )
        await connection.execute(
            """
            INSERT INTO beds (id, ward_id, label) VALUES ($1, $2, $3)
            ON CONFLICT (id) DO UPDATE
            SET ward_id = EXCLUDED.ward_id, label = EXCLUDED.label
            """,
            BED_ID,
            WARD_ID,
            BED_LABEL,
        )
        # Another patient admitted to the demo bed since the last run is discharged,
        # so the demo patient can have the bed back.
        await connection.execute(
            """
            UPDATE patients SET bed_id = NULL, discharged_at = now()
            WHERE bed_id = $1 AND id <> $2
            """,
            BED_ID,
            PATIENT_ID,
        )
        await connection.execute(
            """
            INSERT INTO patients (id, display_name, bed_id) VALUES ($1, $2, $3)
            ON CONFLICT (id) DO UPDATE
            SET bed_id = EXCLUDED.bed_id, discharged_at = NULL
            """,
            PATIENT_ID,
            PATIENT_NAME,
            BED_ID,
        )
        ana = await upsert_user(
            connection, ASSIGNED_NURSE, "Ana", password, [ROLE_NURSE]
        )
        ben = await upsert_user(
            connection, UNASSIGNED_NURSE, "Ben", password, [ROLE_NURSE]
        )
        await ensure_bed_assignment(connection, ana, BED_ID)
        await register_device(connection, device_id, BED_ID, device_secret)
    logger.info(
        "demo data ready: patient %s in %s, device %s", PATIENT_ID, BED_ID, device_id
    )
    return {
        "ward": {"id": WARD_ID, "name": WARD_NAME},
        "bed": BED_ID,
        "patient": PATIENT_ID,
        "users": [
            {
                "username": ASSIGNED_NURSE,
                "id": ana,
                "assigned": [PATIENT_ID],
                "bed": BED_ID,
            },
            {"username": UNASSIGNED_NURSE, "id": ben, "assigned": []},
        ],
        "device": {"id": device_id, "bed": BED_ID},
    }
