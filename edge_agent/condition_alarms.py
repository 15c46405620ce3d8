"""Alarms of a bed without a sensor board: technical conditions and vital-sign limits.

On a bed with a sensor board, the ECG analyzer's alarm engine carries the agent's
technical conditions and the limits of the board's numerics. A bed with only
Bluetooth sensors may have no ECG at all (a pulse oximeter and a cuff), or only once
a chest strap connects. This module runs an alarm engine of its own for such a bed,
with the same policies, and builds the ``Emergency`` messages as ``EcgStream`` does.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import datetime

from edge_agent.alarms.change import AlarmChange
from edge_agent.alarms.engine import AlarmEngine
from edge_agent.alarms.limits import NumericLimit
from edge_agent.ecg_stream import Outgoing, utc_now
from protocol.messages import Emergency

# The engine counts time in samples; here one sample is one millisecond of the
# monotonic clock, which keeps the limits' condition delays in seconds.
ENGINE_TICKS_PER_SECOND = 1000.0


class ConditionAlarms:
    """Alarm state of the agent's own conditions and of vital-sign limits."""

    def __init__(
        self, device_id: str, limits: Sequence[NumericLimit] = (),
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.device_id = device_id
        self._clock = clock
        self._monotonic = monotonic
        self._engine = AlarmEngine([], ENGINE_TICKS_PER_SECOND, limits=limits)
        self._alarm_ids: dict[str, str] = {}
        self._started_at: dict[str, datetime] = {}

    def set_condition(self, kind: str, present: bool, evidence: str) -> Outgoing:
        """Start or end a condition and return the alarm messages it causes."""
        changes = self._engine.set_condition(kind, present, self._tick(), evidence)
        return self.changes_to_send(changes)

    def update_numeric(self, code: str, value: float) -> Outgoing:
        """Check a vital sign (``spo2``, ``heart_rate``, ...) against its limits."""
        return self.changes_to_send(
            self._engine.update_numeric(code, value, self._tick())
        )

    def acknowledge(self, kind: str) -> Outgoing:
        return self.changes_to_send(self._engine.acknowledge(kind))

    def limit_alarm_raised(self, code: str) -> bool:
        """Return whether a low or high alarm of vital sign ``code`` is raised."""
        kinds = (f"{code}_low", f"{code}_high")
        return any(kind in kinds for kind in self._engine.active)

    def alarm_id_of(self, kind: str) -> str | None:
        """Return the id sent with the current raise of ``kind``, None if not raised."""
        return self._alarm_ids.get(kind)

    def _tick(self) -> int:
        return int(self._monotonic() * ENGINE_TICKS_PER_SECOND)

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
