"""A simulated sensor: a bumble GATT server that notifies values and injects faults."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from bumble import gatt
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device

logger = logging.getLogger(__name__)

# Battery level a simulated sensor reports until set_battery() changes it.
DEFAULT_BATTERY_PERCENT = 90
# Advertising interval; short, because the link is in-process and tests wait on it.
ADVERTISING_INTERVAL_MS = 20.0

ValueSource = Callable[[int], bytes]


def fixed(value: bytes) -> ValueSource:
    """Return a source that sends the same encoded value at every step."""
    return lambda step: value


def stepped(values: Sequence[bytes]) -> ValueSource:
    """Return a source that sends ``values`` in turn, repeating the last one."""
    if not values:
        raise ValueError("stepped() needs at least one value")
    return lambda step: values[min(step, len(values) - 1)]


@dataclass
class Feed:
    """One measurement characteristic: where it lives, how it is sent, what it sends."""

    service_uuid: UUID
    characteristic_uuid: UUID
    source: ValueSource
    indicate: bool = False
    # False for a stream the central must start first, as on a Polar H10.
    active: bool = True
    characteristic: gatt.Characteristic = field(init=False)
    # Raw values to send instead of the source's next values, oldest first.
    malformed: deque[bytes] = field(default_factory=deque)

    def __post_init__(self) -> None:
        properties = (
            gatt.Characteristic.Properties.INDICATE
            if self.indicate
            else gatt.Characteristic.Properties.NOTIFY
        )
        self.characteristic = gatt.Characteristic(
            self.characteristic_uuid, properties, gatt.Characteristic.READABLE,
            self.source(0),
        )


class SimulatedSensor:
    """A peripheral that advertises, accepts connections and sends its feeds' values.

    ``step()`` sends one value of every feed to the subscribed central; ``run()`` calls
    it every ``interval_s``. Faults: ``drop_link()``, ``leave_range()``,
    ``notifying = False`` and ``send_malformed()``.
    """

    def __init__(
        self, device: Device, feeds: list[Feed],
        battery_percent: int = DEFAULT_BATTERY_PERCENT,
        controls: Sequence[tuple[UUID, gatt.Characteristic]] = (),
    ) -> None:
        self.device = device
        self.feeds = feeds
        self.notifying = True
        self.in_range = True
        self._tasks: set[asyncio.Task[None]] = set()
        self.step_index = 0
        self.battery = gatt.Characteristic(
            gatt.GATT_BATTERY_LEVEL_CHARACTERISTIC,
            gatt.Characteristic.Properties.READ | gatt.Characteristic.Properties.NOTIFY,
            gatt.Characteristic.READABLE,
            bytes([battery_percent]),
        )
        self._add_services(controls)

    @property
    def address(self) -> str:
        return str(self.device.random_address)

    @property
    def connected(self) -> bool:
        return bool(self.device.connections)

    def _add_services(
        self, controls: Sequence[tuple[UUID, gatt.Characteristic]]
    ) -> None:
        by_service: dict[UUID, list[gatt.Characteristic]] = {}
        for feed in self.feeds:
            by_service.setdefault(feed.service_uuid, []).append(feed.characteristic)
        for service_uuid, characteristic in controls:
            by_service.setdefault(service_uuid, []).append(characteristic)
        by_service[gatt.GATT_BATTERY_SERVICE] = [self.battery]
        for uuid, characteristics in by_service.items():
            self.device.add_service(gatt.Service(uuid, characteristics))

    async def start(self) -> None:
        """Power on and advertise; advertising restarts after every disconnection."""
        await self.device.power_on()
        # Vendor services with 128-bit UUIDs (Polar's PMD) are found by discovery,
        # not advertised, as on the real sensors.
        service_uuids = b"".join({
            feed.service_uuid.to_bytes(): None for feed in self.feeds
            if len(feed.service_uuid.to_bytes()) == 2
        })
        self.device.advertising_data = bytes(AdvertisingData([
            (AdvertisingData.COMPLETE_LOCAL_NAME, self.device.name.encode()),
            (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS, service_uuids),
        ]))
        self.device.on(Device.EVENT_CONNECTION, self._on_connection)
        await self._advertise()
        logger.info("simulated sensor %s advertising as %s",
                    self.device.name, self.address)

    async def _advertise(self) -> None:
        # Restarted here rather than by bumble's auto_restart, so that a sensor out
        # of range stays silent.
        await self.device.start_advertising(
            auto_restart=False,
            advertising_interval_min=ADVERTISING_INTERVAL_MS,
            advertising_interval_max=ADVERTISING_INTERVAL_MS,
        )

    def _on_connection(self, connection: Connection) -> None:
        connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)

    def _on_disconnection(self, reason: int) -> None:
        if self.in_range:
            self._spawn(self._advertise())

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop_background_tasks(self) -> None:
        """Cancel pending advertising restarts and responses, as at the end of a test.

        The sensor stays out of range afterwards, so no later disconnection starts
        new ones.
        """
        self.in_range = False
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def leave_range(self) -> None:
        """Drop the link and stop advertising until ``return_to_range()``."""
        self.in_range = False
        await self.device.stop_advertising()
        await self.drop_link()

    async def return_to_range(self) -> None:
        self.in_range = True
        await self._advertise()

    async def step(self) -> None:
        """Send each feed's next value (or a queued malformed one) to subscribers."""
        if self.notifying and self.connected:
            for feed in self.feeds:
                if not feed.active:
                    continue
                value = (
                    feed.malformed.popleft() if feed.malformed
                    else feed.source(self.step_index)
                )
                await self._send(feed, value)
        self.step_index += 1

    async def _send(self, feed: Feed, value: bytes) -> None:
        send = (
            self.device.indicate_subscribers if feed.indicate
            else self.device.notify_subscribers
        )
        try:
            await send(feed.characteristic, value)
        except Exception as exc:  # noqa: BLE001 - a link dropped mid-send is expected
            logger.info("%s: could not send %s: %s", self.device.name,
                        feed.characteristic_uuid, exc)

    async def run(self, interval_s: float) -> None:
        """Step every ``interval_s`` until cancelled."""
        while True:
            await self.step()
            await asyncio.sleep(interval_s)

    async def set_battery(self, percent: int) -> None:
        await self.device.notify_subscribers(self.battery, bytes([percent]))

    def send_malformed(self, value: bytes, feed_index: int = 0) -> None:
        """Queue ``value`` to go out in place of the feed's next good value."""
        self.feeds[feed_index].malformed.append(value)

    async def drop_link(self) -> None:
        """Disconnect every central, as a sensor walking out of range would."""
        for connection in list(self.device.connections.values()):
            logger.info("%s: dropping the link to %s", self.device.name,
                        connection.peer_address)
            await connection.disconnect()
