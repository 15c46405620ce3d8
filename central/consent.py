"""Consent: a user may read a patient with a current assignment or the admin role.

An assignment is current when ``starts_at <= now() < ends_at``, or ``ends_at`` is
NULL. REST reads call ``authorize_read`` and the events subscription calls
``may_read`` before touching patient data. Each refusal is audited and logged at
WARNING.
"""

from __future__ import annotations

import logging

import asyncpg

from central.api import ApiError
from central.audit import Actor
from central.auth import Principal
from central.services import Services

logger = logging.getLogger(__name__)

Executor = asyncpg.Pool | asyncpg.Connection

_CURRENT_ASSIGNMENT = """
    a.starts_at <= now() AND (a.ends_at IS NULL OR now() < a.ends_at)
"""


class AccessDenied(ApiError):
    """A 403: the caller has no current assignment to the patient."""

    def __init__(self, patient_id: str) -> None:
        super().__init__(
            403,
            f"you are not assigned to patient {patient_id}; ask the charge nurse for "
            "an assignment",
            patient_id=patient_id,
        )
        self.patient_id = patient_id


async def may_read(executor: Executor, principal: Principal, patient_id: str) -> bool:
    """Return True when ``principal`` may read ``patient_id`` right now."""
    if principal.is_admin:
        return True
    allowed = await executor.fetchval(
        f"""
        SELECT EXISTS (
            SELECT 1 FROM assignments a
            WHERE a.user_id = $1 AND a.patient_id = $2 AND {_CURRENT_ASSIGNMENT}
        )
        """,
        principal.user_id,
        patient_id,
    )
    return bool(allowed)


async def authorize_read(
    services: Services, principal: Principal, patient_id: str, action: str
) -> None:
    """Raise AccessDenied (after auditing the refusal) unless the read is allowed."""
    if await may_read(services.pool, principal, patient_id):
        return
    services.counters.increment("consent.refused")
    logger.warning(
        "rejected %s of patient %s by user %s: no current assignment",
        action,
        patient_id,
        principal.user_id,
    )
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        action,
        outcome="refused",
        patient_id=patient_id,
        detail={"reason": "no current assignment"},
    )
    raise AccessDenied(patient_id)


async def readable_patients(
    executor: Executor, principal: Principal
) -> list[asyncpg.Record]:
    """Return the patients ``principal`` may read, with bed and ward, ordered by id."""
    columns = """
        p.id, p.display_name, p.bed_id, b.label AS bed_label, w.name AS ward
        FROM patients p
        LEFT JOIN beds b ON b.id = p.bed_id
        LEFT JOIN wards w ON w.id = b.ward_id
    """
    if principal.is_admin:
        return await executor.fetch(f"SELECT {columns} ORDER BY p.id")
    return await executor.fetch(
        f"""
        SELECT {columns}
        WHERE EXISTS (
            SELECT 1 FROM assignments a
            WHERE a.user_id = $1 AND a.patient_id = p.id AND {_CURRENT_ASSIGNMENT}
        )
        ORDER BY p.id
        """,
        principal.user_id,
    )


async def current_assignments(executor: Executor, user_id: int) -> list[asyncpg.Record]:
    """Return the user's current assignments with each patient's bed."""
    return await executor.fetch(
        f"""
        SELECT a.patient_id, p.bed_id, a.starts_at, a.ends_at
        FROM assignments a JOIN patients p ON p.id = a.patient_id
        WHERE a.user_id = $1 AND {_CURRENT_ASSIGNMENT}
        ORDER BY a.patient_id, a.starts_at
        """,
        user_id,
    )
