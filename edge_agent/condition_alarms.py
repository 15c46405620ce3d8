"""Technical alarms of a bed that has no ECG stream to carry them.

The ECG analyzer's alarm engine carries the agent's technical conditions once an ECG
lead streams. A bed with only Bluetooth numerics sensors (a pulse oximeter, a cuff)
has no such stream, and a bed whose ECG has not started yet has none so far. This
module runs an alarm engine of its own for them, with the same policies, and builds
the ``Emergency`` messages the way ``EcgStream`` does.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from edge_agent.alarms.engine import AlarmEngine
from edge_agent.alarms.change import AlarmChange
from edge_agent.ecg_stream import Outgoing, utc_now
from protocol.messages import Emergency


class ConditionAlarms:
    """Raises and clears technical alarms for conditions the agent detects itself."""

    def __init__(self, device_id: str, clock: Callable[[], datetime] = utc_now) -> None:
        self.device_id = device_id
        self._clock = clock
        # No rules and no sample rate: the policies of technical conditions have no
        # delay, and the engine's sample index here only orders the changes.
        self._engine = AlarmEngine([])
        self._changes_seen = 0
        self._alarm_ids: dict[str, str] = {}
        self._started_at: dict[str, datetime] = {}

    def set_condition(self, kind: str, present: bool, evidence: str) -> Outgoing:
        """Start or end a condition and return the alarm messages it causes."""
        self._changes_seen += 1
        changes = self._engine.set_condition(kind, present, self._changes_seen, evidence)
        return self.changes_to_send(changes)

    def acknowledge(self, kind: str) -> Outgoing:
        return self.changes_to_send(self._engine.acknowledge(kind))

    def alarm_id_of(self, kind: str) -> str | None:
        """Return the id sent with the current raise of ``kind``, None if not raised."""
        return self._alarm_ids.get(kind)

    def is_raised(self, kind: str) -> bool:
        return kind in self._engine.active

    def changes_to_send(self, changes: list[AlarmChange]) -> Outgoing:
        out = Outgoing()
        for change in changes:
            out.alarms.append((change, self._emergency_builder(change)))
        return out

    def _emergency_builder(self, change: AlarmChange) -> Callable[[int], Emergency]:
        now = self._clock()
        if change.state == "raised" or change.kind not in self._alarm_ids:
            self._started_at[change.kind] = now
            self._alarm_ids[change.kind] = (
                f"{change.kind}-{int(now.timestamp() * 1000)}"[:64]
            )
        # A clear carries the id and start of the raise it ends, so central pairs them.
        alarm_id = self._alarm_ids[change.kind]
        started_at = self._started_at[change.kind]
        if change.state == "cleared":
            del self._alarm_ids[change.kind]
            del self._started_at[change.kind]

        def build(seq: int) -> Emergency:
            return Emergency(
                device_id=self.device_id, seq=seq, sent_at=self._clock(),
                alarm_id=alarm_id, kind=change.kind, priority=change.priority,
                category=change.category, state=change.state, started_at=started_at,
                evidence=change.evidence,
            )

        return build
