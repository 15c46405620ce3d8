"""Command line of the simulated board (``aura-board``); ``aura-board ble ...`` runs
the simulated Bluetooth sensors (see ``firmware_sim.ble.cli``).

Prints ``device: PATH`` on stdout once the pseudo-terminal (and the ``--link``
symlink) exists, logs to stderr and stops on SIGINT or SIGTERM. SIGUSR1 toggles a
forced flat line.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path
from types import FrameType

from firmware_sim.board import Board
from firmware_sim.config import DEFAULT_BOARD_ID, DEFAULT_HELLO_INTERVAL_S, BoardConfig
from firmware_sim.scenarios import (
    SCENARIOS,
    SyntheticSource,
    build_scenario,
)
from firmware_sim.sources import SampleSource, WfdbReplay
from firmware_sim.synthetic import (
    DEFAULT_SAMPLE_RATE_HZ,
    SyntheticEcg,
)

logger = logging.getLogger(__name__)

DEFAULT_RECORD = Path(__file__).parent / "recordings" / "100"
EXIT_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    """Build the argument parser of ``aura-board``."""
    parser = argparse.ArgumentParser(
        prog="aura-board",
        description="Simulated bedside ECG board on a pseudo-terminal.",
    )
    parser.add_argument(
        "--record",
        type=Path,
        help="WFDB record to replay, without extension (default: MIT-BIH record 100)",
    )
    parser.add_argument(
        "--synthetic",
        choices=list(SCENARIOS),
        metavar="SCENARIO",
        help="stream a synthetic ECG scenario instead of a record: "
        + ", ".join(SCENARIOS),
    )
    parser.add_argument(
        "--sample-rate",
        type=float,
        metavar="HZ",
        help=f"sampling rate of the synthetic ECG, 125 to 1000 Hz "
        f"(default: {DEFAULT_SAMPLE_RATE_HZ:g})",
    )
    parser.add_argument(
        "--lead",
        help="ECG signal name in the record (default: MLII or II if present, else the "
        "first signal)",
    )
    parser.add_argument(
        "--speed",
        type=float,
        default=1.0,
        help="replay rate relative to real time; 0 sends as fast as the reader takes "
        "data (default: 1)",
    )
    parser.add_argument(
        "--flatline-at",
        type=float,
        metavar="SECONDS",
        help="record time at which the lead goes flat, for asystole tests",
    )
    parser.add_argument(
        "--flatline-for",
        type=float,
        metavar="SECONDS",
        help="how long the lead stays flat, in record seconds",
    )
    parser.add_argument(
        "--no-loop", action="store_true", help="stop at the end of the record"
    )
    parser.add_argument(
        "--link", type=Path, help="also create a symlink at this path to the device"
    )
    _add_fault_arguments(parser)
    return parser


def _add_fault_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board-id", default=DEFAULT_BOARD_ID, help="id sent in HELLO")
    parser.add_argument(
        "--hello-interval",
        type=float,
        default=DEFAULT_HELLO_INTERVAL_S,
        metavar="SECONDS",
        help="record time between HELLO frames (default: %(default)s)",
    )
    parser.add_argument(
        "--garbage-every",
        type=int,
        default=0,
        metavar="K",
        help="insert random bytes after every K-th frame (default: off)",
    )
    parser.add_argument(
        "--garbage-bytes",
        type=int,
        default=16,
        metavar="N",
        help="number of random bytes per insertion (default: %(default)s)",
    )
    parser.add_argument(
        "--corrupt-crc-every",
        type=int,
        default=0,
        metavar="K",
        help="send every K-th frame with a wrong CRC (default: off)",
    )
    parser.add_argument(
        "--seed",
        type=int,
        help="seed of the random garbage bytes and of the synthetic ECG (default for "
        "the synthetic ECG: 0)",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="stderr log level (default: INFO)"
    )


def main(argv: list[str] | None = None) -> int:
    """Run the board until a signal or, with ``--no-loop``, the end of the record.

    ``ble`` as the first argument runs the simulated Bluetooth sensors instead.
    """
    arguments = sys.argv[1:] if argv is None else argv
    if arguments[:1] == ["ble"]:
        from firmware_sim.ble.cli import main as ble_main

        return ble_main(arguments[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.flatline_at is None) != (args.flatline_for is None):
        parser.error("--flatline-at and --flatline-for must be given together")
    if args.synthetic is not None and (args.record is not None or args.lead):
        parser.error("--synthetic cannot be combined with --record or --lead")
    if args.synthetic is None and args.sample_rate is not None:
        parser.error("--sample-rate applies only with --synthetic")
    logging.basicConfig(
        stream=sys.stderr,
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        config = _config_from_args(args)
    except ValueError as error:
        parser.error(str(error))
    try:
        board = Board(_make_source(args), config)
    except (OSError, ValueError) as error:
        origin = args.synthetic or args.record or DEFAULT_RECORD
        logger.error("Cannot start the board with %s: %s", origin, error)
        return EXIT_FAILURE
    return _run(board, args.link)


def _make_source(args: argparse.Namespace) -> SampleSource:
    loop = not args.no_loop
    if args.synthetic is None:
        return WfdbReplay(args.record or DEFAULT_RECORD, args.lead, loop=loop)
    sample_rate_hz = (
        DEFAULT_SAMPLE_RATE_HZ if args.sample_rate is None else args.sample_rate
    )
    seed = 0 if args.seed is None else args.seed
    ecg = build_scenario(args.synthetic, sample_rate_hz, seed)
    logger.info(
        "Synthetic scenario %s: %.0f s at %g Hz, %d beats, episodes: %s",
        args.synthetic,
        ecg.duration_s,
        sample_rate_hz,
        len(ecg.truth.beat_samples),
        _describe_episodes(ecg),
    )
    return SyntheticSource(ecg, loop=loop)


def _describe_episodes(ecg: SyntheticEcg) -> str:
    fs = ecg.sample_rate_hz
    episodes = [
        f"{episode.kind} defined at {episode.definition_sample / fs:.2f} s"
        for episode in ecg.truth.episodes
    ]
    return ", ".join(episodes) or "none"


def _config_from_args(args: argparse.Namespace) -> BoardConfig:
    return BoardConfig(
        board_id=args.board_id,
        speed=args.speed,
        hello_interval_s=args.hello_interval,
        flatline_at_s=args.flatline_at,
        flatline_for_s=args.flatline_for,
        garbage_every=args.garbage_every,
        garbage_bytes=args.garbage_bytes,
        corrupt_crc_every=args.corrupt_crc_every,
        seed=args.seed,
    )


def _run(board: Board, link: Path | None) -> int:
    _install_signal_handlers(board)
    device = board.open()
    try:
        if link is not None:
            _create_link(link, device)
    except OSError as error:
        logger.error("Cannot create the device link %s: %s", link, error)
        board.stop()
        return EXIT_FAILURE
    # Printed after the link exists, so a reader of this line can open either path.
    print(f"device: {device}", flush=True)
    try:
        board.start()
        board.wait()
    finally:
        board.stop()
        if link is not None:
            _remove_link(link, device)
        print(
            f"sent {board.frames_sent} frames, {board.samples_sent} samples",
            file=sys.stderr,
            flush=True,
        )
    return EXIT_FAILURE if board.error is not None else 0


def _install_signal_handlers(board: Board) -> None:
    def stop(signum: int, _frame: FrameType | None) -> None:
        board.request_stop()

    def toggle_flatline(signum: int, _frame: FrameType | None) -> None:
        board.set_flatline(not board.flatline_forced)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGUSR1, toggle_flatline)


def _create_link(link: Path, device: str) -> None:
    """Point ``link`` at the device, replacing an older symlink but no other file."""
    if link.exists() and not link.is_symlink():
        raise FileExistsError(f"{link} exists and is not a symlink")
    temporary = link.with_name(f".{link.name}.{os.getpid()}")
    os.symlink(device, temporary)
    os.replace(temporary, link)
    logger.info("Linked %s to %s", link, device)


def _remove_link(link: Path, device: str) -> None:
    # Leave the link alone if another board has replaced it meanwhile.
    if link.is_symlink() and os.readlink(link) == device:
        link.unlink()
