"""Technical conditions of the ECG input, derived from a signal quality assessment."""

import logging

from edge_agent.dsp.quality import SignalQuality

logger = logging.getLogger(__name__)

NONFINITE = "nonfinite"  # NaN or infinite samples in the chunk (missing data)
FLAT_LINE = "flat_line"  # no signal over the quality window
SATURATED = "saturated"  # samples stuck at the amplifier's rails
LEADS_OFF = "leads_off"  # flat or pinned to a rail: no usable electrode contact
NOISY = "noisy"  # signal quality index below the analysis limit

# An electrode that comes off drives most front ends to a rail, so a window with at
# least half of its samples at the rails counts as leads off.
LEADS_OFF_SATURATED_FRACTION = 0.5


def technical_conditions(
    quality: SignalQuality, chunk_nonfinite: int, noisy_quality_index: float
) -> frozenset[str]:
    """Return the technical conditions of the quality window and the latest chunk."""
    conditions: set[str] = set()
    if chunk_nonfinite > 0:
        conditions.add(NONFINITE)
    if quality.flat:
        conditions.add(FLAT_LINE)
    if quality.saturated_fraction > 0.0:
        conditions.add(SATURATED)
    if quality.flat or quality.saturated_fraction >= LEADS_OFF_SATURATED_FRACTION:
        conditions.add(LEADS_OFF)
    elif quality.index < noisy_quality_index:
        conditions.add(NOISY)
    return frozenset(conditions)
