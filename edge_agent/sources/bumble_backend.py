"""A bleak backend on a bumble ``Device``, so bleak code runs without BlueZ or a radio.

``bumble_backends(device)`` returns a scanner class and a client class to pass as
``backend=`` to ``BleakScanner`` and ``BleakClient``. With a device on bumble's
``LocalLink`` the unmodified bleak code of ``edge_agent.sources.ble`` talks to the
simulated sensors of ``firmware_sim.ble`` in one process. Written against bleak 3.1
and bumble 0.0.236. Pairing is not supported.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid as uuid_module
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from bleak.args import SizedBuffer
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient, NotifyCallback
from bleak.backends.descriptor import BleakGATTDescriptor
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.backends.service import BleakGATTService, BleakGATTServiceCollection
from bleak.exc import BleakError
from bleak.uuids import normalize_uuid_str
from bumble import core, hci
from bumble.core import AdvertisingData
from bumble.device import Advertisement, Connection, Device, Peer
from bumble.gatt import Characteristic
from bumble.gatt_client import CharacteristicProxy

logger = logging.getLogger(__name__)

# ATT notification header (opcode and handle) and the Core Specification's minimum MTU.
ATT_HEADER_BYTES = 3
ATT_DEFAULT_MTU = 23
# Requested at every connection, as BlueZ does; the Polar H10 needs at least 232 bytes
# for its ECG frames, and bumble truncates longer notifications to the MTU.
ATT_REQUESTED_MTU = 517
_PROPERTY_NAMES = {
    Characteristic.Properties.BROADCAST: "broadcast",
    Characteristic.Properties.READ: "read",
    Characteristic.Properties.WRITE_WITHOUT_RESPONSE: "write-without-response",
    Characteristic.Properties.WRITE: "write",
    Characteristic.Properties.NOTIFY: "notify",
    Characteristic.Properties.INDICATE: "indicate",
    Characteristic.Properties.AUTHENTICATED_SIGNED_WRITES: "authenticated-signed-writes",
    Characteristic.Properties.EXTENDED_PROPERTIES: "extended-properties",
}


class _SharedHost:
    """State that the scanners and clients of one bumble device share.

    BlueZ lets several programs scan at once and queues connection requests. A bumble
    device has one scan and one pending LE connection, so scans are counted here and
    connection setups (connect, MTU exchange, discovery) take turns.
    """

    def __init__(self, device: Device) -> None:
        self.device = device
        self.scanners = 0
        self.connecting = asyncio.Lock()

    async def scanner_started(self, active: bool) -> None:
        self.scanners += 1
        if self.scanners == 1:
            # NOTE: the first scanner's mode holds until every scanner has stopped.
            await self.device.start_scanning(active=active)

    async def scanner_stopped(self) -> None:
        self.scanners -= 1
        if self.scanners == 0:
            await self.device.stop_scanning()


def bumble_backends(
    device: Device,
) -> tuple[type[BaseBleakScanner], type[BaseBleakClient]]:
    """Return bleak scanner and client backend classes bound to ``device``."""
    host = _SharedHost(device)
    scanner = type("BumbleScanner", (BumbleScanner,), {"device": device, "host": host})
    client = type("BumbleClient", (BumbleClient,), {"device": device, "host": host})
    return scanner, client


@contextlib.contextmanager
def bleak_errors(action: str) -> Iterator[None]:
    """Raise bumble's errors as ``BleakError``, the type bleak's callers handle."""
    try:
        yield
    except core.BaseBumbleError as exc:
        raise BleakError(f"{action} failed: {exc}") from exc


def bleak_uuid(uuid: core.UUID) -> str:
    """Return a bumble UUID in bleak's form: lower-case 128-bit with dashes."""
    text = uuid.to_hex_str()
    if len(text) in (4, 8):
        return normalize_uuid_str(text)
    return str(uuid_module.UUID(text))


class BumbleScanner(BaseBleakScanner):
    """Reports the advertisements a bumble device receives."""

    device: ClassVar[Device]
    host: ClassVar[_SharedHost]

    def __init__(self, detection_callback: Any, service_uuids: list[str] | None,
                 scanning_mode: str = "active", **kwargs: Any) -> None:
        super().__init__(detection_callback, service_uuids)
        self._active = scanning_mode == "active"

    async def start(self) -> None:
        self.seen_devices = {}
        self.device.on(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        await self.host.scanner_started(self._active)

    async def stop(self) -> None:
        self.device.remove_listener(Device.EVENT_ADVERTISEMENT, self._on_advertisement)
        await self.host.scanner_stopped()

    def _on_advertisement(self, advertisement: Advertisement) -> None:
        data = advertisement.data
        name = data.get(AdvertisingData.COMPLETE_LOCAL_NAME) or data.get(
            AdvertisingData.SHORTENED_LOCAL_NAME
        )
        service_uuids = [
            bleak_uuid(uuid)
            for kind in (
                AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
                AdvertisingData.INCOMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
            )
            for uuid in data.get(kind) or []
        ]
        advertisement_data = AdvertisementData(
            local_name=name if isinstance(name, str) else None,
            manufacturer_data={}, service_data={}, service_uuids=service_uuids,
            tx_power=None, rssi=advertisement.rssi, platform_data=(advertisement,),
        )
        address = advertisement.address
        # The details are the bumble address itself; being no dict with a "path",
        # they also keep bleak_retry_connector from asking BlueZ about the device.
        found = self.create_or_update_device(
            str(address), str(address), advertisement_data.local_name, address,
            advertisement_data,
        )
        if self.is_allowed_uuid(service_uuids):
            self.call_detection_callbacks(found, advertisement_data)


_late_disconnections: set[asyncio.Task[None]] = set()


def _close_late_connection(attempt: asyncio.Future[Connection]) -> None:
    if attempt.cancelled() or attempt.exception() is not None:
        return
    connection = attempt.result()
    logger.info("closing the link to %s that completed after its connect was "
                "cancelled", connection.peer_address)
    task = asyncio.ensure_future(connection.disconnect())
    _late_disconnections.add(task)
    task.add_done_callback(_late_disconnections.discard)


class BumbleClient(BaseBleakClient):
    """A GATT client on a bumble connection, exposed through bleak's interface."""

    device: ClassVar[Device]
    host: ClassVar[_SharedHost]

    def __init__(self, address_or_ble_device: BLEDevice | str, **kwargs: Any) -> None:
        super().__init__(
            address_or_ble_device,
            disconnected_callback=kwargs.get("disconnected_callback"),
            timeout=kwargs.get("timeout", 10.0),
        )
        details = getattr(address_or_ble_device, "details", None)
        self._peer_address = (
            details if isinstance(details, hci.Address)
            else hci.Address(self.address, hci.Address.RANDOM_DEVICE_ADDRESS)
        )
        self._connection: Connection | None = None
        self._subscribers: dict[int, Callable[[bytes], None]] = {}

    @property
    def name(self) -> str:
        return self.address

    @property
    def mtu_size(self) -> int:
        return self._connection.att_mtu if self._connection else ATT_DEFAULT_MTU

    @property
    def is_connected(self) -> bool:
        return self._connection is not None

    async def connect(self, pair: bool, **kwargs: Any) -> None:
        timeout_s = kwargs.get("timeout", self._timeout)
        async with self.host.connecting:
            attempt = asyncio.ensure_future(
                self.device.connect(self._peer_address, timeout=timeout_s)
            )
            try:
                connection = await asyncio.shield(attempt)
            except asyncio.CancelledError:
                # bumble 0.0.236 forgets a pending connection's own address type when
                # connect() is cancelled, then fails on the connection that completes
                # anyway. So the attempt runs on to its own timeout, and a link it
                # makes after all is closed.
                attempt.add_done_callback(_close_late_connection)
                raise
            except core.BaseBumbleError as exc:
                raise BleakError(f"could not connect to {self.address}: {exc}") from exc
            self._connection = connection
            connection.on(connection.EVENT_DISCONNECTION, self._on_disconnection)
            try:
                with bleak_errors(f"setting up the connection to {self.address}"):
                    peer = Peer(connection)
                    await peer.request_mtu(ATT_REQUESTED_MTU)
                    self.services = await self._discover(peer)
            except BleakError:
                # A half-set-up link must not stay open while the caller retries.
                await self.disconnect()
                raise

    async def _discover(self, peer: Peer) -> BleakGATTServiceCollection:
        collection = BleakGATTServiceCollection()
        await peer.discover_services()
        for proxy in peer.services:
            service = BleakGATTService(proxy, proxy.handle, bleak_uuid(proxy.uuid))
            collection.add_service(service)
            for characteristic in await proxy.discover_characteristics():
                await characteristic.discover_descriptors()
                self._add_characteristic(collection, service, characteristic)
        return collection

    def _add_characteristic(self, collection: BleakGATTServiceCollection,
                            service: BleakGATTService,
                            proxy: CharacteristicProxy) -> None:
        properties = [
            name for flag, name in _PROPERTY_NAMES.items() if proxy.properties & flag
        ]
        characteristic = BleakGATTCharacteristic(
            proxy, proxy.handle, bleak_uuid(proxy.uuid), properties,  # type: ignore[arg-type]
            lambda: self.mtu_size - ATT_HEADER_BYTES, service,
        )
        collection.add_characteristic(characteristic)
        for descriptor in proxy.descriptors:
            collection.add_descriptor(BleakGATTDescriptor(
                descriptor, descriptor.handle, bleak_uuid(descriptor.type), characteristic
            ))

    def _on_disconnection(self, reason: int) -> None:
        logger.info("bumble link to %s closed (HCI reason 0x%02x)", self.address, reason)
        self._connection = None
        self._subscribers.clear()
        if self._disconnected_callback is not None:
            self._disconnected_callback()

    async def disconnect(self) -> None:
        connection = self._connection
        if connection is None:
            return
        # Our own disconnection is not "unsolicited", so bleak's callback stays quiet.
        self._disconnected_callback, callback = None, self._disconnected_callback
        try:
            await connection.disconnect()
        finally:
            self._connection = None
            self._disconnected_callback = callback

    async def pair(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError("pairing is not supported by the bumble backend")

    async def unpair(self) -> None:
        raise NotImplementedError("pairing is not supported by the bumble backend")

    async def read_gatt_char(self, characteristic: BleakGATTCharacteristic, *,
                             use_cached: bool = False, **kwargs: Any) -> bytearray:
        with bleak_errors(f"reading {characteristic.uuid}"):
            return bytearray(await characteristic.obj.read_value())

    async def read_gatt_descriptor(self, descriptor: BleakGATTDescriptor, *,
                                   use_cached: bool = False, **kwargs: Any) -> bytearray:
        with bleak_errors(f"reading {descriptor.uuid}"):
            return bytearray(await descriptor.obj.read_value())

    async def write_gatt_char(self, characteristic: BleakGATTCharacteristic,
                              data: SizedBuffer, response: bool) -> None:
        with bleak_errors(f"writing {characteristic.uuid}"):
            await characteristic.obj.write_value(bytes(data), with_response=response)

    async def write_gatt_descriptor(self, descriptor: BleakGATTDescriptor,
                                    data: SizedBuffer) -> None:
        with bleak_errors(f"writing {descriptor.uuid}"):
            await descriptor.obj.write_value(bytes(data), with_response=True)

    async def start_notify(self, characteristic: BleakGATTCharacteristic,
                           callback: NotifyCallback, **kwargs: Any) -> None:
        def deliver(value: bytes) -> None:
            callback(bytearray(value))

        self._subscribers[characteristic.handle] = deliver
        with bleak_errors(f"subscribing to {characteristic.uuid}"):
            await characteristic.obj.subscribe(deliver)

    async def stop_notify(self, characteristic: BleakGATTCharacteristic) -> None:
        deliver = self._subscribers.pop(characteristic.handle, None)
        with bleak_errors(f"unsubscribing from {characteristic.uuid}"):
            await characteristic.obj.unsubscribe(deliver)
