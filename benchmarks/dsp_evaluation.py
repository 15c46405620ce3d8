"""Evaluate the streaming ECG analysis and print the results as tables.

The first section scores QRS detection on MIT-BIH record 100 under the ANSI/AAMI
EC57 rules, for the project's `EcgAnalyzer` and for wfdb's XQRS, with speed and
memory. The others cover heart-rate error and settling on synthetic rhythms, alarm
delay on synthetic episodes, alarms on clean rhythms, and detection against the SNR
of added noise.

Run from the repository root: ``.venv/bin/python benchmarks/dsp_evaluation.py``
(about a minute on 2 cores) or with ``--quick`` (a few seconds, shorter data).
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
import warnings
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path

# Run as a script, so the repository root must be importable for `benchmarks`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import record100, synthetic_eval
from benchmarks.ec57 import BeatScore
from firmware_sim.synthetic import NoiseKind

logger = logging.getLogger(__name__)

FULL_SNRS_DB = (24.0, 12.0, 6.0, 0.0, -6.0)
QUICK_SNRS_DB = (6.0, -6.0)
SNR_NOISE_KINDS = (NoiseKind.MUSCLE, NoiseKind.ELECTRODE_MOTION)
FULL_REPEATS = 3
# --quick keeps 10 minutes of record 100: the 5-minute learning period and 5 scored.
QUICK_RECORD_MINUTES = 10.0
BYTES_PER_MIB = 1024 * 1024


def main(argv: Sequence[str] | None = None) -> int:
    """Run every section and print its table; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="10 minutes of record 100, one timing run and two SNR levels",
    )
    args = parser.parse_args(argv)
    # wfdb 4.3 uses a pandas API that pandas 3 deprecates; only that is silenced.
    warnings.filterwarnings(
        "ignore", message="The inplace keyword", category=DeprecationWarning
    )
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    started = time.perf_counter()
    print_machine()
    minutes = QUICK_RECORD_MINUTES if args.quick else None
    repeats = 1 if args.quick else FULL_REPEATS
    record = record100.load_record(minutes)
    print_record_section(record, repeats)
    print_heart_rate_section()
    print_alarm_section()
    print_amplitude_section()
    print_snr_section(record, QUICK_SNRS_DB if args.quick else FULL_SNRS_DB)
    print(f"\nTotal run time: {time.perf_counter() - started:.1f} s")
    return 0


def print_machine() -> None:
    print("## Machine")
    print(f"CPU: {cpu_model()} ({os.cpu_count()} logical cores)")
    print(f"Python {platform.python_version()} on {platform.system()}")
    versions = ", ".join(
        f"{package} {metadata.version(package)}"
        for package in ("numpy", "scipy", "wfdb")
    )
    print(f"Packages: {versions}")


def cpu_model() -> str:
    """Return the CPU model name from /proc/cpuinfo, or the platform's guess."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass  # not Linux; fall back below
    return platform.processor() or "unknown"


def print_record_section(record: record100.Record, repeats: int) -> None:
    minutes = record.duration_s / 60.0
    print(
        f"\n## MIT-BIH record 100, lead MLII, {minutes:.0f} min, EC57 rules "
        f"(150 ms window, first 5 min excluded); wall time best of {repeats}"
    )
    runs = [
        record100.run_detector(name, record, record.samples_mv, repeats)
        for name in record100.DETECTORS
    ]
    rows = [
        [
            run.name,
            *_score_cells(run.score),
            f"{run.score.jitter_mean_ms:+.1f}",
            f"{run.score.jitter_sd_ms:.1f}",
            f"{run.best_time_s:.2f}",
        ]
        for run in runs
    ]
    headers = ["detector", "TP", "FN", "FP", "Se %", "+P %", "jitter ms", "SD ms"]
    print_table([*headers, "time s"], rows)
    pipeline, xqrs = runs
    peak = record100.pipeline_peak_memory_bytes(record)
    print(f"Pipeline in {record100.CHUNK_S:g} s chunks; XQRS on the whole signal.")
    ratio = xqrs.best_time_s / pipeline.best_time_s
    print(f"Speed ratio (XQRS time / pipeline time): {ratio:.1f}x")
    print(
        f"Pipeline real-time factor (processing time / signal time): "
        f"{pipeline.best_time_s / record.duration_s:.5f} "
        f"({record.duration_s / pipeline.best_time_s:.0f}x faster than real time)"
    )
    print(f"Pipeline peak traced memory (tracemalloc): {peak / BYTES_PER_MIB:.1f} MiB")


def _score_cells(score: BeatScore) -> list[str]:
    return [
        str(score.true_positives),
        str(score.false_negatives),
        str(score.false_positives),
        f"{100 * score.sensitivity:.2f}",
        f"{100 * score.positive_predictivity:.2f}",
    ]


def print_heart_rate_section() -> None:
    print(
        f"\n## Heart rate on synthetic rhythms ({synthetic_eval.SAMPLE_RATE_HZ:g} Hz, "
        f"{synthetic_eval.HEART_RATE_CHUNK_S:g} s chunks); settled = within 5 bpm or "
        "10 % from then on"
    )
    rows = []
    for name, segments in synthetic_eval.HEART_RATE_CASES.items():
        result = synthetic_eval.evaluate_heart_rate(name, segments)
        settling = "never" if result.settling_s is None else f"{result.settling_s:.1f}"
        rows.append(
            [
                name,
                settling,
                f"{result.mean_error_bpm:.2f}",
                f"{result.max_error_bpm:.2f}",
            ]
        )
    print_table(
        ["rhythm", "settling s", "mean abs error bpm", "max abs error bpm"], rows
    )
    print("Settling counts from the start, or from the step for the rate step.")


def print_alarm_section() -> None:
    print(
        f"\n## Alarm delay on synthetic episodes ({synthetic_eval.ALARM_CHUNK_S:g} s "
        "chunks): report = end of the chunk that raised it, minus the definition time"
    )
    rows = []
    unmatched_lines = []
    results = synthetic_eval.run_alarm_scenarios()
    implemented = synthetic_eval.raised_kinds(results)
    for scenario, (ecg, result) in results.items():
        outcomes, unmatched = synthetic_eval.evaluate_alarms(
            scenario, ecg, result, implemented
        )
        for outcome in outcomes:
            rows.append(
                [
                    scenario,
                    str(outcome.kind),
                    outcome.status,
                    _seconds(outcome.report_delay_s),
                    _seconds(outcome.onset_delay_s),
                ]
            )
        if unmatched:
            unmatched_lines.append(f"{scenario}: {', '.join(unmatched)}")
    print_table(
        ["scenario", "alarm", "result", "report delay s", "onset delay s"], rows
    )
    print(
        "Alarms raised with no matching episode:", "; ".join(unmatched_lines) or "none"
    )
    print("A kind never raised in any scenario is reported as not implemented.")
    print("\n## Alarms on clean rhythms (each should raise none)")
    clean_rows = []
    for scenario in (*synthetic_eval.CLEAN_SCENARIOS, "noisy-normal"):
        raised = synthetic_eval.false_alarms(scenario)
        clean_rows.append([scenario, ", ".join(raised) or "none"])
    print_table(["scenario", "alarms raised"], clean_rows)
    print("noisy-normal adds wander, muscle, mains and electrode-motion noise.")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:+.2f}"


def print_amplitude_section() -> None:
    print("\n## Beat detection against QRS amplitude (clean 75 bpm sinus, 60 s)")
    rows = []
    for amplitude_mv in synthetic_eval.QRS_AMPLITUDES_MV:
        score = synthetic_eval.score_amplitude(amplitude_mv)
        rows.append([f"{amplitude_mv:g}", *_score_cells(score)])
    print_table(["R wave mV", "TP", "FN", "FP", "Se %", "+P %"], rows)
    print("Bedside monitors are expected to ignore QRS complexes of 0.15 mV or less.")


def print_snr_section(record: record100.Record, snrs_db: Sequence[float]) -> None:
    print(
        "\n## Record 100 with added noise: EC57 Se / +P (%) against SNR "
        "(SNR against the lead's variance)"
    )
    rows = []
    for kind in SNR_NOISE_KINDS:
        for snr_db in snrs_db:
            noisy = record100.noisy_copy(record, kind, snr_db)
            row = [str(kind), f"{snr_db:g}"]
            for name in record100.DETECTORS:
                run = record100.run_detector(name, record, noisy, repeats=1)
                row += [
                    f"{100 * run.score.sensitivity:.2f}",
                    f"{100 * run.score.positive_predictivity:.2f}",
                ]
            rows.append(row)
    headers = ["noise", "SNR dB", "pipeline Se", "pipeline +P", "XQRS Se", "XQRS +P"]
    print_table(headers, rows)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a Markdown table with columns padded to their widest cell."""
    widths = [
        max(len(headers[column]), *(len(row[column]) for row in rows))
        for column in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        padded = (cell.ljust(width) for cell, width in zip(cells, widths, strict=True))
        return "| " + " | ".join(padded) + " |"

    print(line(headers))
    print("|" + "|".join("-" * (width + 2) for width in widths) + "|")
    for row in rows:
        print(line(row))


if __name__ == "__main__":
    sys.exit(main())
