"""``aura-edge scan``: list nearby Bluetooth LE devices and the health services they
advertise, so a biomedical engineer can bind a sensor to a bed."""

from __future__ import annotations

from dataclasses import dataclass

from bleak import BleakScanner
from bleak.uuids import uuidstr_to_str

from edge_agent.ble_sensors import open_backends
from protocol.gatt import (
    BATTERY_SERVICE_UUID,
    BLOOD_PRESSURE_SERVICE_UUID,
    HEALTH_THERMOMETER_SERVICE_UUID,
    HEART_RATE_SERVICE_UUID,
    PULSE_OXIMETER_SERVICE_UUID,
)
from protocol.gatt.polar_pmd import POLAR_PMD_SERVICE_UUID

# Services the agent reads, with the name printed and the value for the config's
# ble.sensors service key.
HEALTH_SERVICES = {
    HEART_RATE_SERVICE_UUID: ("Heart Rate", "heart_rate"),
    PULSE_OXIMETER_SERVICE_UUID: ("Pulse Oximeter", "pulse_oximeter"),
    BLOOD_PRESSURE_SERVICE_UUID: ("Blood Pressure", "blood_pressure"),
    HEALTH_THERMOMETER_SERVICE_UUID: ("Health Thermometer", "health_thermometer"),
    POLAR_PMD_SERVICE_UUID: ("Polar ECG", "polar_pmd"),
}
# bleak reports no RSSI for some platform caches; such devices sort last.
UNKNOWN_RSSI = -127


@dataclass(frozen=True)
class FoundDevice:
    name: str | None
    address: str
    rssi: int
    service_uuids: tuple[str, ...]

    def service_names(self) -> list[str]:
        """Return the advertised services by name, health services first."""
        health = [HEALTH_SERVICES[uuid][0] for uuid in self.service_uuids
                  if uuid in HEALTH_SERVICES]
        others = [_other_service_name(uuid) for uuid in self.service_uuids
                  if uuid not in HEALTH_SERVICES]
        return health + others

    def is_health_sensor(self) -> bool:
        return any(uuid in HEALTH_SERVICES for uuid in self.service_uuids)


def _other_service_name(uuid: str) -> str:
    if uuid == BATTERY_SERVICE_UUID:
        return "Battery"
    name = uuidstr_to_str(uuid)
    return uuid if name == "Unknown" else name


async def scan(timeout_s: float, transport: str | None = None) -> list[FoundDevice]:
    """Scan for ``timeout_s`` and return the devices heard, strongest first."""
    async with open_backends(transport) as backends:
        if backends.scanner is None:
            found = await BleakScanner.discover(timeout=timeout_s, return_adv=True)
        else:
            found = await BleakScanner.discover(
                timeout=timeout_s, return_adv=True, backend=backends.scanner
            )
    devices = [
        FoundDevice(
            name=advertisement.local_name or device.name,
            address=device.address,
            rssi=advertisement.rssi if advertisement.rssi is not None else UNKNOWN_RSSI,
            service_uuids=tuple(advertisement.service_uuids),
        )
        for device, advertisement in found.values()
    ]
    devices.sort(key=lambda device: (-device.rssi, device.address))
    return devices


def format_table(devices: list[FoundDevice]) -> str:
    """Return the devices as an aligned text table with a header line."""
    rows = [("NAME", "ADDRESS", "RSSI", "SERVICES")]
    rows += [
        (device.name or "(no name)", device.address, f"{device.rssi} dBm",
         ", ".join(device.service_names()) or "-")
        for device in devices
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(3)]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row[:3], widths))
        + "  " + row[3]
        for row in rows
    )
