"""Consent: who may read a patient's record right now, and why.

A user may read a patient when one of these holds, checked in this order:

1. The patient has not restricted the user (no ``deny`` rule for them, and either no
   ``allow`` rules at all or one for them) and the user is an administrator or has a
   current assignment covering the patient: to the patient directly, to the bed the
   patient is in now, or to that bed's ward.
2. The user holds a current break-the-glass grant for the patient. This overrides the
   patient's restrictions, and each read under it is audited separately for review.

An assignment or grant is current when ``starts_at <= now() < ends_at``
(``expires_at`` for grants), or ``ends_at`` is NULL. Because bed and ward
assignments follow the patient's current bed, a transfer moves access with it.

REST reads call ``authorize_read``; the events subscription calls ``may_read`` before
each subscribe and every recheck. Each refusal is audited and logged at WARNING.
"""

from __future__ import annotations

import logging
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

import asyncpg

from central.api import ApiError
from central.audit import Actor
from central.auth import Principal
from central.services import Services

logger = logging.getLogger(__name__)

Executor = asyncpg.Pool | asyncpg.Connection
AccessBasis = Literal["admin", "assignment", "break_the_glass"]

REASON_NO_ASSIGNMENT = "no current assignment"
REASON_RESTRICTED = "restricted by the patient"

CURRENT_ASSIGNMENT = """
    a.starts_at <= now() AND (a.ends_at IS NULL OR now() < a.ends_at)
"""

# One row per patient with everything the decision needs for user $1. The WHERE
# clause is appended: one patient ($2) or all of them.
_ACCESS_SELECT = f"""
    SELECT p.id, p.display_name, p.bed_id, b.label AS bed_label, w.name AS ward,
        EXISTS (
            SELECT 1 FROM patient_access_rules r
            WHERE r.patient_id = p.id AND r.user_id = $1 AND r.effect = 'deny'
        ) AS denied,
        EXISTS (
            SELECT 1 FROM patient_access_rules r
            WHERE r.patient_id = p.id AND r.effect = 'allow'
        ) AND NOT EXISTS (
            SELECT 1 FROM patient_access_rules r
            WHERE r.patient_id = p.id AND r.user_id = $1 AND r.effect = 'allow'
        ) AS not_on_allow_list,
        EXISTS (
            SELECT 1 FROM assignments a
            WHERE a.user_id = $1 AND {CURRENT_ASSIGNMENT}
              AND (a.patient_id = p.id OR a.bed_id = p.bed_id OR a.ward_id = b.ward_id)
        ) AS assigned,
        (
            SELECT g.id FROM break_glass_grants g
            WHERE g.user_id = $1 AND g.patient_id = p.id
              AND g.starts_at <= now() AND now() < g.expires_at
            ORDER BY g.expires_at DESC LIMIT 1
        ) AS glass_grant_id
    FROM patients p
    LEFT JOIN beds b ON b.id = p.bed_id
    LEFT JOIN wards w ON w.id = b.ward_id
"""
_ACCESS_ONE = _ACCESS_SELECT + "WHERE p.id = $2"
_ACCESS_ALL = _ACCESS_SELECT + "ORDER BY p.id"


@dataclass(frozen=True)
class AccessDecision:
    """Whether a user may read one patient now, on what basis, or why not."""

    allowed: bool
    basis: AccessBasis | None = None
    refusal: str | None = None
    glass_grant_id: int | None = None


class AccessDenied(ApiError):
    """A 403: the caller may not read the patient now."""

    def __init__(self, patient_id: str, refusal: str = REASON_NO_ASSIGNMENT) -> None:
        emergency = (
            f"in an emergency, POST /patients/{patient_id}/break-the-glass "
            "with a reason"
        )
        if refusal == REASON_RESTRICTED:
            message = (
                f"patient {patient_id} has limited who may see their record and you "
                f"are not permitted; {emergency}"
            )
        else:
            message = (
                f"you are not assigned to patient {patient_id}; ask the charge nurse "
                f"for an assignment, or {emergency}"
            )
        super().__init__(403, message, patient_id=patient_id)
        self.patient_id = patient_id


class RoleRequired(ApiError):
    """A 403: the caller lacks every role that allows the action."""

    def __init__(self, action: str, roles: Collection[str]) -> None:
        super().__init__(
            403, f"{action} needs one of the roles: {', '.join(sorted(roles))}"
        )


def _decide(row: asyncpg.Record | None, principal: Principal) -> AccessDecision:
    if row is None:
        # An unknown patient: administrators go on to a 404, everyone else gets
        # the same 403 as for a patient they may not read, so ids cannot be probed.
        if principal.is_admin:
            return AccessDecision(True, "admin")
        return AccessDecision(False, refusal=REASON_NO_ASSIGNMENT)
    restricted = row["denied"] or row["not_on_allow_list"]
    if not restricted and principal.is_admin:
        return AccessDecision(True, "admin")
    if not restricted and row["assigned"]:
        return AccessDecision(True, "assignment")
    if row["glass_grant_id"] is not None:
        return AccessDecision(
            True, "break_the_glass", glass_grant_id=row["glass_grant_id"]
        )
    return AccessDecision(
        False, refusal=REASON_RESTRICTED if restricted else REASON_NO_ASSIGNMENT
    )


async def check_access(
    executor: Executor, principal: Principal, patient_id: str
) -> AccessDecision:
    """Decide whether ``principal`` may read ``patient_id`` right now."""
    row = await executor.fetchrow(_ACCESS_ONE, principal.user_id, patient_id)
    return _decide(row, principal)


async def may_read(executor: Executor, principal: Principal, patient_id: str) -> bool:
    """Return True when ``principal`` may read ``patient_id`` right now."""
    return (await check_access(executor, principal, patient_id)).allowed


async def authorize_read(
    services: Services, principal: Principal, patient_id: str, action: str
) -> AccessDecision:
    """Return the decision if the read is allowed, else audit it and raise AccessDenied.

    A read under break-the-glass gets an extra ``break_the_glass.read`` audit row
    naming the grant, so reviewers find every such read in one place.
    """
    decision = await check_access(services.pool, principal, patient_id)
    if decision.allowed:
        if decision.basis == "break_the_glass":
            services.counters.increment("consent.break_the_glass_reads")
            await services.audit.record(
                services.pool,
                Actor.user(principal.user_id),
                "break_the_glass.read",
                patient_id=patient_id,
                detail={"grant_id": decision.glass_grant_id, "action": action},
            )
        return decision
    await audit_refusal(services, principal, action, patient_id, decision.refusal)
    raise AccessDenied(patient_id, decision.refusal or REASON_NO_ASSIGNMENT)


async def audit_refusal(
    services: Services,
    principal: Principal,
    action: str,
    patient_id: str | None,
    reason: str | None,
) -> None:
    """Count, log at WARNING and audit one refused action."""
    services.counters.increment("consent.refused")
    logger.warning(
        "rejected %s of patient %s by user %s: %s",
        action,
        patient_id,
        principal.user_id,
        reason,
    )
    await services.audit.record(
        services.pool,
        Actor.user(principal.user_id),
        action,
        outcome="refused",
        patient_id=patient_id,
        detail={"reason": reason},
    )


async def require_role(
    services: Services,
    principal: Principal,
    roles: Collection[str],
    action: str,
    patient_id: str | None = None,
) -> None:
    """Raise RoleRequired, after auditing the refusal, unless the user has a role."""
    if any(role in principal.roles for role in roles):
        return
    reason = f"needs one of the roles {sorted(roles)}"
    await audit_refusal(services, principal, action, patient_id, reason)
    raise RoleRequired(action, roles)


async def readable_patients(executor: Executor, principal: Principal) -> list[dict]:
    """Return the patients ``principal`` may read, with bed, ward and access basis.

    Each item has ``id``, ``display_name``, ``bed_id``, ``bed_label``, ``ward`` and
    ``access`` (admin, assignment or break_the_glass), ordered by id.
    """
    rows = await executor.fetch(_ACCESS_ALL, principal.user_id)
    readable = []
    for row in rows:
        decision = _decide(row, principal)
        if decision.allowed:
            readable.append(
                {
                    "id": row["id"],
                    "display_name": row["display_name"],
                    "bed_id": row["bed_id"],
                    "bed_label": row["bed_label"],
                    "ward": row["ward"],
                    "access": decision.basis,
                }
            )
    return readable


async def current_assignments(executor: Executor, user_id: int) -> list[asyncpg.Record]:
    """Return the user's current assignments, each with the patients it covers now.

    ``scope`` is patient, bed or ward. ``patient_ids`` lists the patients the
    assignment covers at this moment (the one patient, whoever is in the bed, or
    everyone in the ward's beds).
    """
    return await executor.fetch(
        f"""
        SELECT a.id, a.patient_id, a.bed_id, a.ward_id, a.starts_at, a.ends_at,
               CASE WHEN a.patient_id IS NOT NULL THEN 'patient'
                    WHEN a.bed_id IS NOT NULL THEN 'bed'
                    ELSE 'ward' END AS scope,
               ARRAY(
                   SELECT p.id FROM patients p LEFT JOIN beds b ON b.id = p.bed_id
                   WHERE p.id = a.patient_id OR p.bed_id = a.bed_id
                      OR b.ward_id = a.ward_id
                   ORDER BY p.id
               ) AS patient_ids,
               (SELECT p.bed_id FROM patients p WHERE p.id = a.patient_id)
                   AS patient_bed_id
        FROM assignments a
        WHERE a.user_id = $1 AND {CURRENT_ASSIGNMENT}
        ORDER BY a.starts_at, a.id
        """,
        user_id,
    )
