"""The record of an alarm being raised or cleared."""

from dataclasses import dataclass


@dataclass(frozen=True)
class AlarmChange:
    """An alarm being raised or cleared.

    Rules also use it to report that an alarm condition started (`raised`) or ended
    (`cleared`). The engine turns those into alarm changes after the condition delay,
    latching and acknowledgement.
    """

    kind: str  # an AlarmKind value, or `<code>_low` / `<code>_high` for limits
    priority: str  # an AlarmPriority value
    state: str  # an AlarmState value
    # Absolute sample index where the raise or clear condition was met.
    onset_sample: int
    evidence: str  # why, with the figures, for the clinician and the event log
    category: str = "physiological"  # an AlarmCategory value
