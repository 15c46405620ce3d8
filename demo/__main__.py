"""aura-demo: the whole chain on a replayed recording, stopped with Ctrl-C.

Starts the embedded database and central, seeds a ward (one patient in bed 1, a nurse
assigned to bed 1 and one who is not), starts the simulated sensor board on
record 100 and the bedside agent, then shows the live view of the assigned nurse
and the refusal the other nurse gets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import shutil
import signal
import sys
from pathlib import Path

from demo.console import show_refusals, watch_patient
from demo.stack import ASSIGNED_NURSE, PATIENT_ID, UNASSIGNED_NURSE, Stack

logger = logging.getLogger("demo")


def _non_negative(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _positive(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aura-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("var/demo"),
                        help="directory for the database, buffer and logs (default: var/demo)")
    parser.add_argument("--record", help="WFDB record to replay (default: MIT-BIH 100)")
    parser.add_argument("--speed", type=_non_negative, default=1.0,
                        help="replay speed factor: 1 is real time, 0 as fast as the agent "
                             "reads; above 1 the times shown are record times, ahead "
                             "of the clock (default: 1)")
    parser.add_argument("--asystole-at", type=float, default=40.0,
                        help="record time in seconds at which the board flat-lines the lead "
                             "for 8 s, to show an asystole alarm; negative disables it "
                             "(default: 40)")
    parser.add_argument("--duration", type=_positive, default=None,
                        help="stop after this many seconds (default: run until Ctrl-C)")
    return parser


def _say(line: str) -> None:
    print(line, flush=True)


async def _run(stack: Stack, duration: float | None) -> None:
    _say(f"central is up at {stack.base_url}; demo users {ASSIGNED_NURSE} and "
         f"{UNASSIGNED_NURSE} have the password {stack.password}")
    device = await asyncio.to_thread(stack.start_board)
    _say(f"sensor board streaming on {device}")
    stack.start_agent()
    _say("bedside agent started; logs in " + str(stack.workdir / "logs"))

    _say(f"\n{UNASSIGNED_NURSE} (not assigned to {PATIENT_ID}) tries to look:")
    other_token = await asyncio.to_thread(stack.login, UNASSIGNED_NURSE)
    await show_refusals(stack.base_url, stack.events_url, other_token, PATIENT_ID,
                        lambda line: _say("  " + line))

    _say(f"\n{ASSIGNED_NURSE} (assigned to {PATIENT_ID}) watches live; Ctrl-C stops:")
    watching = _watch_as_assigned_nurse(stack)
    if duration is None:
        await watching
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(watching, duration)


async def _watch_as_assigned_nurse(stack: Stack) -> None:
    # Tokens are short-lived, so the watch logs in again whenever its token expires
    # rather than ending the demo after AURA_TOKEN_TTL_S.
    while True:
        token = await asyncio.to_thread(stack.login, ASSIGNED_NURSE)
        ended_by = await watch_patient(stack.events_url, token, PATIENT_ID,
                                       lambda line: _say("  " + line))
        if ended_by is None or ended_by.status != 401:
            return
        _say(f"  (logging {ASSIGNED_NURSE} in again)")


def _stop_on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM (kill, closing the terminal, timeout) must stop the stack the same
    # way Ctrl-C does, not leave central, the board and the agent running.
    raise KeyboardInterrupt


def _clear_previous_run(workdir: Path) -> None:
    # A latched alarm or a buffer from an earlier run would otherwise show up again,
    # because the agent of a new run never clears what the old one raised.
    for name in ("central", "agent", "logs", "board.tty"):
        path = workdir / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.workdir.exists() and not args.workdir.is_dir():
        print(f"aura-demo: --workdir {args.workdir} is not a directory", file=sys.stderr)
        return 2
    args.workdir.mkdir(parents=True, exist_ok=True)
    _clear_previous_run(args.workdir)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    stack = Stack(
        workdir=args.workdir.resolve(), record=args.record, speed=args.speed,
        flatline_at_s=args.asystole_at if args.asystole_at >= 0 else None,
        flatline_for_s=8.0,
    )
    _say("starting the embedded database and seeding the demo ward...")
    try:
        stack.seed()
        stack.start_central()
        asyncio.run(_run(stack, args.duration))
    except KeyboardInterrupt:
        _say("\nstopping...")
    except (RuntimeError, TimeoutError, OSError) as exc:
        print(f"aura-demo: {exc}", file=sys.stderr)
        return 1
    finally:
        stack.stop_all()
        _say("stopped.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
