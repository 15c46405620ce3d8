"""Sample sources for the simulated board: replay of WFDB records."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Protocol

import numpy as np

with warnings.catch_warnings():
    # wfdb 4.3 calls DataFrame.set_index(inplace=True) on import, which pandas 3.1
    # deprecates with a warning. Only that message is silenced.
    warnings.filterwarnings(
        "ignore", message="The inplace keyword", category=DeprecationWarning
    )
    import wfdb

logger = logging.getLogger(__name__)

# Leads a bedside rhythm display shows by default: modified lead II in MIT-BIH records,
# lead II elsewhere.
PREFERRED_LEADS = ("MLII", "II")

_MICROVOLTS_PER_UNIT = {"uV": 1.0, "µV": 1.0, "mV": 1000.0, "V": 1_000_000.0}
_INT16_MIN, _INT16_MAX = -(2**15), 2**15 - 1

try:
    # Marker value that each WFDB storage format uses for a missing sample.
    # NOTE: private to wfdb (checked against wfdb 4.3); without it no sample is
    # treated as missing.
    from wfdb.io._signal import INVALID_SAMPLE_VALUE as _INVALID_SAMPLE_VALUE
except ImportError:  # pragma: no cover - depends on the installed wfdb
    _INVALID_SAMPLE_VALUE = {}


class SampleSource(Protocol):
    """Source of int16 ECG counts, baseline removed, with their rate and scale."""

    sample_rate_hz: float
    microvolts_per_count: float
    lead: str

    def read(self, count: int) -> np.ndarray:
        """Return up to ``count`` next samples as int16; empty once exhausted."""
        ...


class LoopingReplay:
    """Reads int16 samples from ``self.samples`` in order, wrapping when looping.

    Subclasses set ``samples``, ``loop``, ``position`` and ``_offset``.
    """

    samples: np.ndarray
    loop: bool
    position: int
    _offset: int

    @property
    def exhausted(self) -> bool:
        """Whether a non-looping source has returned its last sample."""
        return not self.loop and self._offset >= len(self.samples)

    def read(self, count: int) -> np.ndarray:
        """Return up to ``count`` next samples as int16, wrapping when looping."""
        parts = []
        remaining = count
        while remaining > 0 and len(self.samples) > 0:
            if self._offset >= len(self.samples):
                if not self.loop:
                    break
                self._offset = 0
            part = self.samples[self._offset : self._offset + remaining]
            self._offset += len(part)
            remaining -= len(part)
            parts.append(part)
        block = np.concatenate(parts) if parts else np.empty(0, dtype=np.int16)
        self.position += len(block)
        return block


class WfdbReplay(LoopingReplay):
    """Replay one ECG lead of a WFDB record as signed ADC counts.

    ``record_path`` names the record without extension (``.../100``); a trailing
    ``.hea`` is accepted too. ``lead`` picks a signal by name; ``None`` picks the
    first of ``PREFERRED_LEADS`` that the record has, else its first signal. With
    ``loop`` the record starts over at its end, otherwise ``read`` returns an empty
    array from then on.
    """

    def __init__(
        self, record_path: str | Path, lead: str | None = None, loop: bool = True
    ) -> None:
        path = Path(record_path)
        if path.suffix == ".hea":
            path = path.with_suffix("")
        header = wfdb.rdheader(str(path))
        channel = _select_channel(list(header.sig_name), lead, path)
        record = wfdb.rdrecord(str(path), physical=False, channels=[channel])

        self.record_name = record.record_name
        self.signal_names = list(header.sig_name)
        self.lead: str = record.sig_name[0]
        self.sample_rate_hz = float(record.fs)
        self.microvolts_per_count = _microvolts_per_count(
            record.units[0], float(record.adc_gain[0]), self.lead
        )
        self.loop = loop
        self.samples, self.invalid_samples, self.clipped_samples = _to_counts(
            record.d_signal[:, 0], int(record.baseline[0]), record.fmt[0]
        )
        # Absolute count of samples returned by read(), across loops.
        self.position = 0
        self._offset = 0
        logger.info(
            "Loaded record %s lead %s: %d samples at %g Hz, %g uV per count",
            path,
            self.lead,
            len(self.samples),
            self.sample_rate_hz,
            self.microvolts_per_count,
        )


def _select_channel(names: list[str], lead: str | None, path: Path) -> int:
    if not names:
        raise ValueError(f"record {path} has no signals")
    if lead is None:
        preferred = [name for name in PREFERRED_LEADS if name in names]
        return names.index(preferred[0]) if preferred else 0
    if lead not in names:
        raise ValueError(
            f"lead {lead!r} not found in record {path}; available: {', '.join(names)}"
        )
    return names.index(lead)


def _microvolts_per_count(unit: str, adc_gain: float, lead: str) -> float:
    if unit not in _MICROVOLTS_PER_UNIT:
        raise ValueError(
            f"signal {lead!r} has unit {unit!r}, expected one of "
            f"{', '.join(_MICROVOLTS_PER_UNIT)} for an ECG lead"
        )
    if adc_gain <= 0:
        raise ValueError(f"signal {lead!r} has invalid ADC gain {adc_gain}")
    return _MICROVOLTS_PER_UNIT[unit] / adc_gain


def _to_counts(
    digital: np.ndarray, baseline: int, storage_format: str
) -> tuple[np.ndarray, int, int]:
    """Remove the baseline and fit int16; return counts, missing and clipped totals.

    Missing samples become 0 (baseline) because the board has no way to mark them.
    """
    invalid_value = _INVALID_SAMPLE_VALUE.get(storage_format)
    missing = (
        np.zeros(len(digital), dtype=bool)
        if invalid_value is None
        else digital == invalid_value
    )
    counts = digital.astype(np.int64) - baseline
    counts[missing] = 0
    out_of_range = (counts < _INT16_MIN) | (counts > _INT16_MAX)
    invalid_total = int(missing.sum())
    clipped_total = int(out_of_range.sum())
    if invalid_total or clipped_total:
        logger.warning(
            "Record has %d missing samples (sent as 0) and %d samples outside int16 "
            "(clipped)",
            invalid_total,
            clipped_total,
        )
    clipped = np.clip(counts, _INT16_MIN, _INT16_MAX).astype(np.int16)
    return clipped, invalid_total, clipped_total
