"""Offline analysis of a WFDB record with the same streaming analyser as the bedside.

`analyze_record` reads the record with `wfdb` (including MATLAB .mat records) and feeds
one ECG lead to `EcgAnalyzer` chunk by chunk. When the record has an ABP or PLETH
signal, that goes in too, to confirm or reject asystole and extreme bradycardia. It
writes:

- `beats.csv`: `sample,seconds` for each detected R peak;
- `heart_rate.csv`: `seconds,bpm` at each beat where a rate is available;
- `alarms.jsonl`: one JSON object per alarm change, with `kind`, `priority`,
  `category`, `state`, `onset_seconds` and `evidence`.
"""

import csv
import json
import logging
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import numpy as np

from edge_agent.alarms.engine import AlarmChange
from edge_agent.dsp.pipeline import AnalyzerSettings, EcgAnalyzer

logger = logging.getLogger(__name__)

BEATS_FILE = "beats.csv"
HEART_RATE_FILE = "heart_rate.csv"
ALARMS_FILE = "alarms.jsonl"

# Signal names that WFDB databases use for ECG leads: the limb and chest leads, the
# modified leads of MIT-BIH (MLII, V5, ...) and generic names such as "ECG1".
_ECG_NAME = re.compile(
    r"^(I|II|III|AVR|AVL|AVF|V\d?R?|ML\w*|MCL\d?|CM\d?|D\d|ECG.*|EKG.*|LEAD.*)$",
    re.IGNORECASE,
)
# Pulse signals, in order of preference: a pressure pulse is less prone to motion
# artefact than a plethysmogram.
_PULSE_NAMES = ("ABP", "ART", "PLETH", "PPG")
_MILLIVOLTS_PER_UNIT = {"mv": 1.0, "uv": 1e-3, "µv": 1e-3, "v": 1e3}

# wfdb 4.3 calls DataFrame.set_index(inplace=True), which pandas 3.1 deprecates with a
# warning on import and on reading annotations. Only that message is silenced.
_WFDB_PANDAS_WARNING = "The inplace keyword"


@dataclass(frozen=True)
class AnalysisSummary:
    """Summary of one `analyze_record` run: record, lead and the files written."""

    record_name: str
    lead: str
    pulse_signal: str | None  # name of the pulse signal used, None without one
    sample_rate_hz: float
    beat_count: int
    duration_s: float
    alarm_count: int
    beats_path: Path
    heart_rate_path: Path
    alarms_path: Path


def analyze_record(
    record_path: str | Path,
    lead: str | None,
    out_dir: Path,
    chunk_s: float = 1.0,
    settings: AnalyzerSettings | None = None,
) -> AnalysisSummary:
    """Analyse one lead of a WFDB record and write beats, heart rate and alarms.

    `record_path` is the record without extension, such as `recordings/100`. With
    `lead=None` the first ECG lead is used. Raises ValueError for an unknown lead, a
    lead not in volts, or a non-positive `chunk_s`.
    """
    if not chunk_s > 0:
        raise ValueError(f"chunk_s={chunk_s} must be positive")
    record_path = Path(record_path)
    if record_path.suffix == ".hea":
        record_path = record_path.with_suffix("")
    record = _wfdb().rdrecord(str(record_path))
    lead_index = select_lead(record.sig_name, lead)
    lead_name = record.sig_name[lead_index]
    samples_mv = _to_millivolts(
        record.p_signal[:, lead_index], record.units[lead_index], lead_name
    )
    sample_rate_hz = float(record.fs)
    pulse_index = select_pulse_signal(record.sig_name)
    pulse_name = None if pulse_index is None else record.sig_name[pulse_index]
    pulse = None if pulse_index is None else record.p_signal[:, pulse_index]
    logger.info(
        "Analysing record %s lead %s with pulse signal %s: %d samples at %g Hz",
        record.record_name,
        lead_name,
        pulse_name,
        samples_mv.size,
        sample_rate_hz,
    )
    analyzer = EcgAnalyzer(sample_rate_hz, settings, pulse_name or "pulse signal")
    beats, rates, alarms = _run_analyzer(analyzer, samples_mv, pulse, chunk_s)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    summary = AnalysisSummary(
        record_name=record.record_name,
        lead=lead_name,
        pulse_signal=pulse_name,
        sample_rate_hz=sample_rate_hz,
        beat_count=len(beats),
        duration_s=samples_mv.size / sample_rate_hz,
        alarm_count=len(alarms),
        beats_path=out_dir / BEATS_FILE,
        heart_rate_path=out_dir / HEART_RATE_FILE,
        alarms_path=out_dir / ALARMS_FILE,
    )
    _write_beats(summary.beats_path, beats, sample_rate_hz)
    _write_heart_rate(summary.heart_rate_path, beats, rates, sample_rate_hz)
    _write_alarms(summary.alarms_path, alarms, sample_rate_hz)
    return summary


def select_lead(signal_names: list[str], lead: str | None) -> int:
    """Return the index of `lead`, or of the first ECG lead when `lead` is None."""
    if lead is not None:
        if lead not in signal_names:
            raise ValueError(
                f"lead {lead!r} not found in the record; available: "
                f"{', '.join(signal_names)}"
            )
        return signal_names.index(lead)
    for index, name in enumerate(signal_names):
        if _ECG_NAME.match(name.strip()):
            return index
    raise ValueError(
        f"no ECG lead found among {', '.join(signal_names)}; pass one of them as lead"
    )


def select_pulse_signal(signal_names: list[str]) -> int | None:
    """Return the index of the preferred pulse signal (ABP, PLETH, ...), or None."""
    names = [name.strip().upper() for name in signal_names]
    for preferred in _PULSE_NAMES:
        if preferred in names:
            return names.index(preferred)
    return None


def _wfdb() -> ModuleType:
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=_WFDB_PANDAS_WARNING, category=DeprecationWarning
        )
        import wfdb
    return wfdb


def _to_millivolts(samples: np.ndarray, unit: str, lead_name: str) -> np.ndarray:
    factor = _MILLIVOLTS_PER_UNIT.get((unit or "").strip().lower())
    if factor is None:
        raise ValueError(
            f"lead {lead_name!r} is in {unit!r}, not a voltage; choose an ECG lead"
        )
    return np.asarray(samples, dtype=np.float64) * factor


def _run_analyzer(
    analyzer: EcgAnalyzer,
    samples_mv: np.ndarray,
    pulse: np.ndarray | None,
    chunk_s: float,
) -> tuple[list[int], list[float | None], list[AlarmChange]]:
    chunk = max(1, round(chunk_s * analyzer.sample_rate_hz))
    beats: list[int] = []
    rates: list[float | None] = []
    alarms: list[AlarmChange] = []
    for begin in range(0, samples_mv.size, chunk):
        pulse_chunk = None if pulse is None else pulse[begin : begin + chunk]
        result = analyzer.process(samples_mv[begin : begin + chunk], pulse_chunk)
        beats.extend(result.beat_samples)
        rates.extend(result.beat_heart_rates_bpm)
        alarms.extend(result.alarms)
    return beats, rates, alarms


def _write_beats(path: Path, beats: list[int], sample_rate_hz: float) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["sample", "seconds"])
        for beat in beats:
            writer.writerow([beat, f"{beat / sample_rate_hz:.3f}"])


def _write_heart_rate(
    path: Path, beats: list[int], rates: list[float | None], sample_rate_hz: float
) -> None:
    with path.open("w", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(["seconds", "bpm"])
        for beat, rate in zip(beats, rates, strict=True):
            if rate is not None:
                writer.writerow([f"{beat / sample_rate_hz:.3f}", f"{rate:.1f}"])


def _write_alarms(path: Path, alarms: list[AlarmChange], sample_rate_hz: float) -> None:
    with path.open("w") as file:
        for change in alarms:
            entry = {
                "kind": str(change.kind),
                "priority": str(change.priority),
                "category": str(change.category),
                "state": str(change.state),
                "onset_seconds": round(change.onset_sample / sample_rate_hz, 3),
                "evidence": change.evidence,
            }
            file.write(json.dumps(entry) + "\n")
