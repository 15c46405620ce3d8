"""The bed's Bluetooth LE sensors, as configured in ``[ble]``, run side by side.

``BleSensorGroup`` builds one ``BleSensorSource`` per ``[[ble.sensors]]`` entry and
runs them until cancelled. Readings and ECG samples go to the callbacks the agent
passes in. Link losses and returning data go to ``on_link_change`` and ``on_data``
with the sensor's label, so that the agent's supervisor can raise and clear the
``sensor_disconnected`` alarm, and battery levels go to ``on_battery`` for the
``sensor_battery_low`` alarm. By default bleak's platform backend is used (BlueZ on
a Pi); ``ble.transport`` names a bumble transport such as ``usb:0`` instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from bleak.backends.client import BaseBleakClient
from bleak.backends.scanner import BaseBleakScanner

from edge_agent.config import BleSensorSettings, BleSettings
from edge_agent.sources.ble import BleSensorSource
from edge_agent.sources.ble_readings import BleEcgSamples, BleReading
from edge_agent.sources.bumble_backend import bumble_backends
from protocol.gatt import (
    BLOOD_PRESSURE_SERVICE_UUID,
    HEALTH_THERMOMETER_SERVICE_UUID,
    HEART_RATE_SERVICE_UUID,
    PULSE_OXIMETER_SERVICE_UUID,
)
from protocol.gatt.polar_pmd import POLAR_PMD_SERVICE_UUID

logger = logging.getLogger(__name__)

SERVICE_UUIDS = {
    "heart_rate": HEART_RATE_SERVICE_UUID,
    "pulse_oximeter": PULSE_OXIMETER_SERVICE_UUID,
    "blood_pressure": BLOOD_PRESSURE_SERVICE_UUID,
    "health_thermometer": HEALTH_THERMOMETER_SERVICE_UUID,
    "polar_pmd": POLAR_PMD_SERVICE_UUID,
}
# Static random address of the agent's own bumble device on a bumble transport (the
# two top bits set mark a static random address).
BUMBLE_HOST_ADDRESS = "F0:A0:00:00:00:01"


@dataclass(frozen=True)
class BleBackends:
    """bleak backend classes; None for both means bleak's platform default."""

    scanner: type[BaseBleakScanner] | None = None
    client: type[BaseBleakClient] | None = None


@contextlib.asynccontextmanager
async def open_backends(transport: str | None) -> AsyncIterator[BleBackends]:
    """Yield the platform backends, or bumble ones on ``transport`` while open."""
    if transport is None:
        yield BleBackends()
        return
    from bumble.device import Device
    from bumble.hci import Address
    from bumble.transport import open_transport

    try:
        hci = await open_transport(transport)
    except Exception as exc:  # bumble raises a variety of types for a bad spec
        raise OSError(f"cannot open bumble transport {transport!r}: {exc}") from exc
    try:
        device = Device.with_hci(
            "aura-edge", Address(BUMBLE_HOST_ADDRESS), hci.source, hci.sink
        )
        await device.power_on()
        logger.info("BLE through bumble on transport %s", transport)
        scanner, client = bumble_backends(device)
        yield BleBackends(scanner, client)
    finally:
        await hci.close()


class BleSensorGroup:
    """Runs the configured sensors and reports their data and their links."""

    def __init__(
        self,
        settings: BleSettings,
        on_reading: Callable[[BleReading], None],
        on_ecg: Callable[[BleEcgSamples], None],
        on_link_change: Callable[[str, bool], None],
        on_data: Callable[[str], None],
        backends: BleBackends | None = None,
        on_battery: Callable[[str, int], None] | None = None,
    ) -> None:
        self.settings = settings
        self._on_reading = on_reading
        self._on_ecg = on_ecg
        self._on_link_change = on_link_change
        self._on_data = on_data
        self._on_battery = on_battery
        # Given by tests that run the sensors on an in-process bumble link.
        self._backends = backends
        self.sources: list[BleSensorSource] = []

    def alarmed_labels(self) -> list[str]:
        """Return the labels of the sensors whose loss raises sensor_disconnected."""
        return [s.label() for s in self.settings.sensors if s.disconnect_alarm]

    async def run(self) -> None:
        """Run every sensor until cancelled."""
        if self._backends is not None:
            await self._run_sources(self._backends)
            return
        async with open_backends(self.settings.transport) as backends:
            await self._run_sources(backends)

    async def _run_sources(self, backends: BleBackends) -> None:
        self.sources = [self._make_source(sensor, backends)
                        for sensor in self.settings.sensors]
        async with asyncio.TaskGroup() as tasks:
            for source in self.sources:
                tasks.create_task(source.run(), name=f"ble-{source.label}")

    def _make_source(self, sensor: BleSensorSettings,
                     backends: BleBackends) -> BleSensorSource:
        label = sensor.label()
        settings = self.settings

        def on_reading(reading: BleReading) -> None:
            self._on_data(label)
            self._on_reading(reading)

        def on_ecg(samples: BleEcgSamples) -> None:
            self._on_data(label)
            self._on_ecg(samples)

        return BleSensorSource(
            sensor.address, on_reading,
            name=sensor.name,
            service_uuid=SERVICE_UUIDS[sensor.service] if sensor.service else None,
            on_ecg=on_ecg,
            on_link_change=lambda connected: self._on_link_change(label, connected),
            on_battery=(
                (lambda percent: self._on_battery(label, percent))
                if self._on_battery is not None else None
            ),
            scanner_backend=backends.scanner, client_backend=backends.client,
            scan_timeout_s=settings.scan_timeout_s,
            reconnect_min_delay_s=settings.reconnect_min_delay_s,
            reconnect_max_delay_s=settings.reconnect_max_delay_s,
            silence_timeout_s=sensor.silence_timeout_s,
        )
