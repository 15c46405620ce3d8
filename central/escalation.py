"""Escalation of high-priority alarms that no one acknowledged in time.

A background task in central's lifespan runs ``escalate_due`` every
``ESCALATION_CHECK_INTERVAL_S``. An alarm is due when it is high priority, its
newest message is the raise, no clinician has acknowledged it, and it began at least
``Settings.escalation_after_s`` ago. Each due alarm is escalated once: the pass
claims it by inserting its ``alarm_escalations`` row (the primary key makes the
claim atomic, so of several central processes sharing PostgreSQL only one wins),
audits it in the same transaction, and then sends ``alarm.escalated`` to the
dashboard connections of the recipients.

Recipients are the enabled users with the role ``Settings.escalation_role`` who may
read the patient, as decided by ``central.consent.may_read``.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from central.audit import Actor
from central.auth import Principal
from central.consent import may_read
from central.hub import user_channel
from central.services import Services
from protocol.messages import AlarmEscalated, encode

logger = logging.getLogger(__name__)

# Alarms escalate at most this long after they fall due.
ESCALATION_CHECK_INTERVAL_S = 5.0
ACTION = "alarm.escalate"
ESCALATION_ACTOR = Actor("system", "escalation")

# An alarm's age runs from the earlier of the device's onset time and central's
# receipt of the raise, so a device clock running ahead cannot hold back an
# escalation. The newest message of each high-priority alarm decides if it is active.
_DUE_ALARMS = """
    SELECT newest.*, b.label AS bed_label, p.bed_id
    FROM (
        SELECT DISTINCT ON (a.device_id, a.alarm_id)
               a.device_id, a.alarm_id, a.patient_id, a.kind, a.priority, a.state,
               a.started_at, a.evidence,
               least(a.started_at, m.received_at) AS waiting_since
        FROM alarms a
        JOIN device_messages m ON m.device_id = a.device_id AND m.seq = a.seq
        WHERE a.priority = 'high' AND a.patient_id IS NOT NULL
        ORDER BY a.device_id, a.alarm_id, a.seq DESC
    ) newest
    JOIN patients p ON p.id = newest.patient_id
    LEFT JOIN beds b ON b.id = p.bed_id
    WHERE newest.state = 'raised' AND newest.waiting_since <= $1
      AND NOT EXISTS (
          SELECT 1 FROM alarm_acknowledgements k
          WHERE k.device_id = newest.device_id AND k.alarm_id = newest.alarm_id
      )
      AND NOT EXISTS (
          SELECT 1 FROM alarm_escalations e
          WHERE e.device_id = newest.device_id AND e.alarm_id = newest.alarm_id
      )
    ORDER BY newest.waiting_since
"""


@dataclass(frozen=True)
class Escalation:
    """One alarm this process escalated, and to whom."""

    patient_id: str
    device_id: str
    alarm_id: str
    recipient_user_ids: tuple[int, ...]
    connections_reached: int


async def escalate_due(services: Services, now: datetime) -> list[Escalation]:
    """Escalate every alarm due at ``now`` that no other process has claimed."""
    after = timedelta(seconds=services.settings.escalation_after_s)
    # TODO: this reads every high-priority alarm ever stored (through a partial
    # index), so a cut-off on started_at is needed once the table grows large.
    due = await services.pool.fetch(_DUE_ALARMS, now - after)
    escalations = []
    for alarm in due:
        escalation = await _escalate(services, alarm, now)
        if escalation is not None:
            escalations.append(escalation)
    return escalations


async def _escalate(
    services: Services, alarm: asyncpg.Record, now: datetime
) -> Escalation | None:
    role = services.settings.escalation_role
    recipients = await escalation_recipients(services, alarm["patient_id"], role)
    waited_s = max(0.0, (now - alarm["waiting_since"]).total_seconds())
    async with services.pool.acquire() as connection, connection.transaction():
        claimed = await connection.fetchval(
            """
            INSERT INTO alarm_escalations (device_id, alarm_id, patient_id, kind,
                priority, alarm_started_at, escalated_at, recipient_role,
                recipient_user_ids)
            VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
            ON CONFLICT (device_id, alarm_id) DO NOTHING
            RETURNING true
            """,
            alarm["device_id"],
            alarm["alarm_id"],
            alarm["patient_id"],
            alarm["kind"],
            alarm["priority"],
            alarm["started_at"],
            now,
            role,
            list(recipients),
        )
        if not claimed:
            return None
        await services.audit.record(
            connection,
            ESCALATION_ACTOR,
            ACTION,
            patient_id=alarm["patient_id"],
            detail={
                "device_id": alarm["device_id"],
                "alarm_id": alarm["alarm_id"],
                "kind": alarm["kind"],
                "unacknowledged_s": round(waited_s, 1),
                "recipient_role": role,
                "recipient_user_ids": list(recipients),
            },
        )
    services.counters.increment("alarms.escalated")
    reached = _publish(services, alarm, recipients, role, now, waited_s)
    if recipients:
        logger.warning(
            "escalated %s alarm %s of patient %s from device %s to users %s after "
            "%.0f s unacknowledged (%d dashboard connections)",
            alarm["kind"], alarm["alarm_id"], alarm["patient_id"], alarm["device_id"],
            list(recipients), waited_s, reached,
        )
    else:
        # TODO: the claim is final, so a recipient assigned later is not told; the
        # escalation still shows on the ward list.
        services.counters.increment("alarms.escalated_without_recipient")
        logger.warning(
            "alarm %s of patient %s is unacknowledged after %.0f s but no user with "
            "role %r may read the patient; assign one to receive escalations",
            alarm["alarm_id"], alarm["patient_id"], waited_s, role,
        )
    return Escalation(
        alarm["patient_id"], alarm["device_id"], alarm["alarm_id"], recipients, reached
    )


async def escalation_recipients(
    services: Services, patient_id: str, role: str
) -> tuple[int, ...]:
    """Return the ids of enabled users with ``role`` who may read ``patient_id``."""
    rows = await services.pool.fetch(
        """
        SELECT id, username, display_name, roles FROM users
        WHERE $1 = ANY(roles) AND disabled_at IS NULL
        ORDER BY id
        """,
        role,
    )
    recipients = []
    for row in rows:
        principal = Principal(
            row["id"], row["username"], row["display_name"], tuple(row["roles"])
        )
        if await may_read(services.pool, principal, patient_id):
            recipients.append(row["id"])
    return tuple(recipients)


def _publish(
    services: Services,
    alarm: asyncpg.Record,
    recipients: tuple[int, ...],
    role: str,
    now: datetime,
    waited_s: float,
) -> int:
    event = AlarmEscalated(
        patient_id=alarm["patient_id"],
        bed=alarm["bed_label"] or alarm["bed_id"],
        device_id=alarm["device_id"],
        alarm_id=alarm["alarm_id"],
        kind=alarm["kind"],
        priority=alarm["priority"],
        started_at=alarm["started_at"],
        escalated_at=now,
        unacknowledged_s=round(waited_s, 1),
        recipient_role=role,
        reason=(
            f"{alarm['kind']} alarm of patient {alarm['patient_id']} has waited "
            f"{waited_s:.0f} s without an acknowledgement"
        ),
    )
    payload = encode(event).decode()
    return sum(
        services.hub.publish(user_channel(user_id), payload, droppable=False)
        for user_id in recipients
    )


async def load_escalations(
    pool: asyncpg.Pool, patient_ids: list[str]
) -> dict[tuple[str, str], asyncpg.Record]:
    """Return the escalations of these patients by (device_id, alarm_id)."""
    rows = await pool.fetch(
        """
        SELECT device_id, alarm_id, escalated_at, recipient_role, recipient_user_ids
        FROM alarm_escalations WHERE patient_id = ANY($1::text[])
        """,
        patient_ids,
    )
    return {(row["device_id"], row["alarm_id"]): row for row in rows}


async def run_escalations(
    services: Services, interval_s: float = ESCALATION_CHECK_INTERVAL_S
) -> None:
    """Run ``escalate_due`` every ``interval_s`` until cancelled."""
    logger.info(
        "escalating unacknowledged high-priority alarms after %d s to role %r",
        services.settings.escalation_after_s,
        services.settings.escalation_role,
    )
    while True:
        try:
            await escalate_due(services, datetime.now(UTC))
        except (asyncpg.PostgresError, OSError) as exc:
            # The database may be restarting; the next pass retries, and an alarm
            # escalates late rather than never.
            services.counters.increment("alarms.escalation_pass_failed")
            logger.warning("alarm escalation pass failed, retrying: %r", exc)
        except Exception:
            # A bug here must not end escalation for good; log it and keep going.
            services.counters.increment("alarms.escalation_pass_failed")
            logger.exception("alarm escalation pass failed unexpectedly")
        await asyncio.sleep(interval_s)
