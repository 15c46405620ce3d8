"""``python -m firmware_sim ble``: simulated Bluetooth sensors behind an HCI transport.

The sensors and one extra bumble controller share an in-process link. That
controller's HCI is served on a bumble transport (``--hci``), so a Bluetooth host in
another process (``aura-edge scan --transport ...``, or the agent with
``ble.transport``) sees the sensors as if through a USB dongle. With
``tcp-server:127.0.0.1:0`` a free port is chosen, and the line
``hci: tcp-client:127.0.0.1:PORT``, the first line on stdout, says how to reach it;
a ``sensor: NAME ADDRESS`` line for each sensor follows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import socket
import sys
from pathlib import Path

from bumble.controller import Controller
from bumble.transport import Transport, open_transport
from bumble.transport.tcp_server import open_tcp_server_transport_with_socket

from firmware_sim.ble.peripheral import SimulatedSensor
from firmware_sim.ble.polar import FRAME_INTERVAL_S, polar_h10
from firmware_sim.ble.radio import VirtualRadio
from firmware_sim.ble.sensors import (
    blood_pressure_monitor,
    heart_rate_sensor,
    pulse_oximeter,
    thermometer,
)

logger = logging.getLogger(__name__)

DEFAULT_RECORD = Path(__file__).parents[1] / "recordings" / "100"
# Each sensor kind with its address on the simulated link.
SENSOR_ADDRESSES = {
    "heart_rate": "D1:00:00:00:00:01",
    "pulse_oximeter": "D1:00:00:00:00:02",
    "blood_pressure": "D1:00:00:00:00:03",
    "thermometer": "D1:00:00:00:00:04",
    "polar_h10": "D1:00:00:00:00:05",
}
CONTROLLER_ADDRESS = "D0:00:00:00:00:01"
# Continuous sensors notify once a second; cuff and thermometer every 30 s.
SPOT_CHECK_INTERVAL_S = 30.0
EXIT_FAILURE = 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m firmware_sim ble",
        description="Simulated Bluetooth LE bedside sensors behind an HCI transport.",
    )
    parser.add_argument(
        "--hci", required=True, metavar="TRANSPORT",
        help="bumble transport that serves the controller's HCI, for example "
        "tcp-server:127.0.0.1:0 or pty:/tmp/aura-ble",
    )
    parser.add_argument(
        "--sensors", default=",".join(SENSOR_ADDRESSES), metavar="KINDS",
        help="comma-separated sensors to run (default: all of "
        + ", ".join(SENSOR_ADDRESSES) + ")",
    )
    parser.add_argument(
        "--record", type=Path, default=DEFAULT_RECORD,
        help="WFDB record the Polar H10 streams as ECG (default: MIT-BIH record 100)",
    )
    parser.add_argument(
        "--drop-link-every", type=float, metavar="SECONDS",
        help="drop every sensor's link this often, to rehearse reconnection",
    )
    parser.add_argument("--log-level", default="INFO", help="stderr log level")
    return parser


def make_sensors(radio: VirtualRadio, kinds: list[str],
                 record: Path) -> list[tuple[SimulatedSensor, float]]:
    """Create the sensors with the interval between their notifications."""
    builders = {
        "heart_rate": lambda address: (heart_rate_sensor(radio, address, [72]), 1.0),
        "pulse_oximeter": lambda address: (pulse_oximeter(radio, address), 1.0),
        "blood_pressure": lambda address: (
            blood_pressure_monitor(radio, address), SPOT_CHECK_INTERVAL_S
        ),
        "thermometer": lambda address: (
            thermometer(radio, address), SPOT_CHECK_INTERVAL_S
        ),
        "polar_h10": lambda address: (
            polar_h10(radio, address, record), FRAME_INTERVAL_S
        ),
    }
    return [builders[kind](SENSOR_ADDRESSES[kind]) for kind in kinds]


async def open_hci(spec: str) -> tuple[Transport, str]:
    """Open the served transport; return it and the spec a host connects with."""
    scheme, _, where = spec.partition(":")
    if scheme == "tcp-server" and where.endswith(":0"):
        host = where.rpartition(":")[0]
        listener = socket.socket()
        listener.bind((host, 0))
        port = listener.getsockname()[1]
        return await open_tcp_server_transport_with_socket(listener), \
            f"tcp-client:{host}:{port}"
    if scheme == "tcp-server":
        return await open_transport(spec), "tcp-client:" + where
    return await open_transport(spec), spec


async def serve(args: argparse.Namespace, kinds: list[str]) -> None:
    radio = VirtualRadio()
    sensors = make_sensors(radio, kinds, args.record)
    hci, reach_with = await open_hci(args.hci)
    Controller("aura-sim-hci", host_source=hci.source, host_sink=hci.sink,
               link=radio.link, public_address=CONTROLLER_ADDRESS)
    try:
        async with asyncio.TaskGroup() as tasks:
            for sensor, interval_s in sensors:
                await sensor.start()
                tasks.create_task(sensor.run(interval_s))
            # The hci line comes first, so a reader can take the first line.
            print(f"hci: {reach_with}", flush=True)
            for sensor, _ in sensors:
                print(f"sensor: {sensor.device.name} {sensor.address}", flush=True)
            if args.drop_link_every:
                tasks.create_task(drop_links(sensors, args.drop_link_every))
    finally:
        await hci.close()


async def drop_links(sensors: list[tuple[SimulatedSensor, float]],
                     every_s: float) -> None:
    while True:
        await asyncio.sleep(every_s)
        for sensor, _ in sensors:
            await sensor.drop_link()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    kinds = [kind.strip() for kind in args.sensors.split(",") if kind.strip()]
    unknown = sorted(set(kinds) - set(SENSOR_ADDRESSES))
    if unknown or not kinds:
        parser.error(f"--sensors: unknown or missing kind {unknown}; expected some of "
                     + ", ".join(SENSOR_ADDRESSES))
    logging.basicConfig(
        stream=sys.stderr, level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        asyncio.run(_serve_until_signal(args, kinds))
    except (OSError, ValueError) as error:
        logger.error("Cannot run the simulated sensors: %s", error)
        return EXIT_FAILURE
    return 0


async def _serve_until_signal(args: argparse.Namespace, kinds: list[str]) -> None:
    task = asyncio.current_task()
    assert task is not None
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, task.cancel)
    with contextlib.suppress(asyncio.CancelledError):
        await serve(args, kinds)
