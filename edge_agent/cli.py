"""``aura-edge``: run the bedside agent, check its configuration, analyse a record,
scan for Bluetooth LE sensors."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from pathlib import Path

from edge_agent.agent import BedsideAgent
from edge_agent.config import ConfigError, load_config
from edge_agent.service import notify, watchdog_interval_s

logger = logging.getLogger("edge_agent")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aura-edge", description=__doc__)
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="run the agent as a daemon")
    run.add_argument("--config", required=True, type=Path,
                     help="agent configuration file (TOML)")

    check = commands.add_parser("check-config", help="validate a configuration file")
    check.add_argument("config", type=Path)

    analyze = commands.add_parser(
        "analyze", help="run the ECG analysis offline on a WFDB record"
    )
    analyze.add_argument("record", help="WFDB record path without extension")
    analyze.add_argument("--lead", help="signal name of the ECG lead (default: first ECG lead)")
    analyze.add_argument("--out", type=Path, default=Path("."),
                         help="directory for beats.csv, heart_rate.csv and alarms.jsonl, "
                              "created if missing (default: the current directory)")

    scan = commands.add_parser(
        "scan", help="list nearby Bluetooth LE devices and their health services"
    )
    scan.add_argument("--timeout", type=float, default=10.0, metavar="SECONDS",
                      help="how long to listen (default: %(default)s)")
    scan.add_argument("--all", action="store_true",
                      help="also list devices that advertise no health service")
    scan.add_argument("--transport", metavar="TRANSPORT",
                      help="scan through bumble on this transport (for example usb:0) "
                           "instead of BlueZ; default: ble.transport of --config")
    scan.add_argument("--config", type=Path,
                      help="agent configuration whose ble.transport to use")
    return parser


async def _run_agent(config_path: Path) -> None:

    config = load_config(config_path)
    agent = BedsideAgent(config)
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)

    async def announce_ready() -> None:
        await agent.ready.wait()
        notify("READY=1")
        logger.info("agent %s ready", config.device.id)

    ready_task = asyncio.create_task(announce_ready())
    watchdog_task = asyncio.create_task(_feed_watchdog(agent))
    try:
        await agent.run()
    except asyncio.CancelledError:
        notify("STOPPING=1")
        logger.info("agent %s stopping on signal", config.device.id)
    finally:
        for task in (ready_task, watchdog_task):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def _feed_watchdog(agent: BedsideAgent) -> None:
    """Ping systemd's watchdog while the analysis loop makes progress."""
    interval = watchdog_interval_s()
    if interval is None:
        return
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(interval / 3)
        # A blocked event loop sends nothing at all; a stuck analysis loop stops
        # moving last_progress. Either way systemd restarts the service.
        if loop.time() - agent.last_progress < interval / 2:
            notify("WATCHDOG=1")
        else:
            logger.error("analysis loop stalled for %.0f s; not feeding the watchdog",
                         loop.time() - agent.last_progress)


def _analyze(args: argparse.Namespace) -> int:
    from edge_agent.analyze import analyze_record

    if args.out.exists() and not args.out.is_dir():
        raise ValueError(f"--out {args.out} exists and is not a directory")
    args.out.mkdir(parents=True, exist_ok=True)
    try:
        summary = analyze_record(args.record, args.lead, args.out)
    except (OSError, IndexError, KeyError) as exc:
        # wfdb reports unreadable or truncated records with these, not one type.
        raise ValueError(f"cannot read WFDB record {args.record}: {exc}") from exc
    print(f"record {summary.record_name}, lead {summary.lead} at "
          f"{summary.sample_rate_hz:g} Hz, {summary.duration_s:.1f} s")
    print(f"{summary.beat_count} beats, {summary.alarm_count} alarm changes")
    for path in (summary.beats_path, summary.heart_rate_path, summary.alarms_path):
        print(f"wrote {path}")
    return 0


def _scan(args: argparse.Namespace) -> int:
    # Imported here, so the other commands start without loading bleak and bumble.
    from bleak.exc import BleakError

    from edge_agent.ble_scan import format_table, scan

    if not 0.0 < args.timeout <= 300.0:
        raise ValueError(f"--timeout {args.timeout:g} must be within 0..300 seconds")
    transport = args.transport
    if transport is None and args.config is not None:
        transport = load_config(args.config).ble.transport
    try:
        devices = asyncio.run(scan(args.timeout, transport))
    except (OSError, BleakError) as exc:
        print(f"aura-edge: Bluetooth scan failed: {exc}", file=sys.stderr)
        return 1
    listed = devices if args.all else [d for d in devices if d.is_health_sensor()]
    print(format_table(listed))
    hidden = len(devices) - len(listed)
    if hidden:
        print(f"({hidden} devices without a health service not shown; use --all)")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "run":
            asyncio.run(_run_agent(args.config))
        elif args.command == "check-config":
            config = load_config(args.config)
            print(f"{args.config}: valid configuration for device {config.device.id}")
        elif args.command == "analyze":
            return _analyze(args)
        elif args.command == "scan":
            return _scan(args)
    except ConfigError as exc:
        print(f"aura-edge: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, ValueError) as exc:
        print(f"aura-edge: {exc}", file=sys.stderr)
        return 2

    return 0


if __name__ == "__main__":
    sys.exit(main())
