"""Bluetooth LE vital-sign sensors, read with bleak.

The source finds one sensor by address, or by advertised name and service, connects
with ``bleak_retry_connector.establish_connection``, subscribes to every known
measurement characteristic the sensor has, and hands each decoded notification to
``on_reading`` as a list of ``protocol.messages.Measurement``. A Polar H10's ECG
stream is started on its control point and its samples go to ``on_ecg``. A
malformed or implausible notification is counted, logged with the sensor and the
reason, and skipped. After a disconnection the source reconnects with jittered
exponential backoff and subscribes again. The bleak backends can be replaced, which
is how the tests run it against simulated sensors.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from datetime import datetime

from bleak import BleakClient, BleakScanner
from bleak.backends.characteristic import BleakGATTCharacteristic
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError
from bleak_retry_connector import clear_cache, establish_connection

from edge_agent.ecg_stream import utc_now
from edge_agent.sources.ble_readings import BleEcgSamples, BleReading
from edge_agent.sources.polar import PolarSampleCounter
from protocol.codes import VitalSign
from protocol.errors import ProtocolError
from protocol.gatt import (
    BATTERY_LEVEL_UUID,
    BLOOD_PRESSURE_MEASUREMENT_UUID,
    DECODERS,
    HEART_RATE_MEASUREMENT_UUID,
    PLX_CONTINUOUS_MEASUREMENT_UUID,
    PLX_SPOT_CHECK_MEASUREMENT_UUID,
    POLAR_PMD_DATA_UUID,
    TEMPERATURE_MEASUREMENT_UUID,
    BatteryLevel,
    BloodPressureMeasurement,
    CharacteristicValue,
    HeartRateMeasurement,
    PlxContinuousMeasurement,
    PlxSpotCheckMeasurement,
    PolarEcgFrame,
    TemperatureMeasurement,
)
from protocol.gatt.polar_pmd import (
    POLAR_PMD_CONTROL_POINT_UUID,
    start_ecg_error,
    start_ecg_request,
)
from protocol.messages import Measurement

logger = logging.getLogger(__name__)

# Characteristics subscribed when the sensor has them, measurements first.
SUBSCRIBED_CHARACTERISTICS = (
    HEART_RATE_MEASUREMENT_UUID,
    PLX_CONTINUOUS_MEASUREMENT_UUID,
    PLX_SPOT_CHECK_MEASUREMENT_UUID,
    BLOOD_PRESSURE_MEASUREMENT_UUID,
    TEMPERATURE_MEASUREMENT_UUID,
    POLAR_PMD_DATA_UUID,
    BATTERY_LEVEL_UUID,
)
# Rejected notifications are logged one by one up to this count, then every Nth.
REJECTIONS_LOGGED_IN_FULL = 10
REJECTION_LOG_EVERY = 100
# Connection attempts per round of establish_connection before backing off.
CONNECT_ATTEMPTS = 3
# How long the Polar H10 may take to answer the request that starts its ECG stream.
PMD_RESPONSE_TIMEOUT_S = 5.0


class MissingCharacteristicError(BleakError):
    """The sensor offers none of the characteristics it was bound for."""


def _measurement(sign: VitalSign, value: float | None) -> list[Measurement]:
    if value is None:
        return []
    spec = sign.value
    if not spec.minimum <= value <= spec.maximum:
        raise ProtocolError(
            spec.mdc_reference_id,
            f"{value:g} {spec.unit} is outside {spec.minimum:g}..{spec.maximum:g}",
        )
    return [Measurement(code=spec.mdc_reference_id, value=value, unit=spec.unit)]


def measurements_from(value: CharacteristicValue) -> list[Measurement]:
    """Convert a decoded value to measurements in the protocol's codes and units.

    Returns an empty list for values that carry no vital sign (battery level), that
    the sensor marks unreliable, or that are all IEEE 11073 special values. Raises
    ``ProtocolError`` for a value outside the vital sign's plausible range.
    """
    if isinstance(value, HeartRateMeasurement):
        # A strap that reports lost skin contact is not measuring the patient.
        if value.sensor_contact is False:
            return []
        return _measurement(VitalSign.HEART_RATE, float(value.heart_rate_bpm))
    if isinstance(value, (PlxContinuousMeasurement, PlxSpotCheckMeasurement)):
        if not value.is_reliable:
            return []
        pair = value.normal if isinstance(value, PlxContinuousMeasurement) else value.reading
        return _measurement(VitalSign.SPO2, pair.spo2_percent) + _measurement(
            VitalSign.PULSE_RATE, pair.pulse_rate_bpm
        )
    if isinstance(value, BloodPressureMeasurement):
        systolic, diastolic, mean = value.pressures_mmhg()
        return (
            _measurement(VitalSign.SYSTOLIC_BP, systolic)
            + _measurement(VitalSign.DIASTOLIC_BP, diastolic)
            + _measurement(VitalSign.MEAN_BP, mean)
            + _measurement(VitalSign.PULSE_RATE, value.pulse_rate_bpm)
        )
    if isinstance(value, TemperatureMeasurement):
        return _measurement(VitalSign.TEMPERATURE, value.celsius)
    return []


class BleSensorSource:
    """Reads one Bluetooth LE sensor and hands its readings to ``on_reading``.

    The sensor is found by ``address``, or else by the advertised ``name`` together
    with ``service_uuid``. ``on_link_change`` hears True once a connection is
    subscribed and False when it is lost, and ``on_battery`` the battery level in
    percent whenever the sensor reports it.
    """

    def __init__(
        self,
        address: str | None,
        on_reading: Callable[[BleReading], None],
        *,
        name: str | None = None,
        service_uuid: str | None = None,
        on_ecg: Callable[[BleEcgSamples], None] | None = None,
        on_link_change: Callable[[bool], None] | None = None,
        on_battery: Callable[[int], None] | None = None,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
        scan_timeout_s: float = 10.0,
        reconnect_min_delay_s: float = 0.5,
        reconnect_max_delay_s: float = 30.0,
        silence_timeout_s: float | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        if address is None and (name is None or service_uuid is None):
            raise ValueError("a BLE sensor needs an address, or a name and a service")
        self.address = address
        self._name = name
        self._service_uuid = service_uuid
        self.label = address if address is not None else f"{name!r} ({service_uuid})"
        self._on_reading = on_reading
        self._on_ecg = on_ecg
        self._on_link_change = on_link_change
        self._on_battery = on_battery
        self._scanner_backend = scanner_backend
        self._client_backend = client_backend
        self._scan_timeout_s = scan_timeout_s
        self._min_delay_s = reconnect_min_delay_s
        self._max_delay_s = reconnect_max_delay_s
        # Continuous sensors notify every second or so; a link that stays up but
        # goes quiet for this long is replaced. None suits spot-check sensors.
        self._silence_timeout_s = silence_timeout_s
        self._clock = clock
        self.connected = asyncio.Event()
        self._activity = asyncio.Event()
        # Set when the sensor lacked its characteristics, so that the next connection
        # discovers its services afresh instead of trusting BlueZ's cache.
        self._discover_afresh = False
        self._ecg_counter = PolarSampleCounter()
        # Address of the sensor found at the latest scan; a sensor bound by name may
        # show a new random address after a restart.
        self.device_address = address or ""
        self.connections = 0
        self.readings = 0
        self.rejected = 0
        self.rediscoveries = 0
        self.battery_percent: int | None = None

    async def run(self) -> None:
        """Connect, read and reconnect until cancelled."""
        delay_s = self._min_delay_s
        while True:
            readings_before = self.readings
            try:
                await self._session()
                # A sensor that connects and drops again without sending anything
                # keeps backing off, so a flapping link is not retried twice a second.
                if self.readings > readings_before:
                    delay_s = self._min_delay_s
                else:
                    delay_s = min(delay_s * 2, self._max_delay_s)
            except (BleakError, TimeoutError, OSError) as exc:
                logger.warning("BLE sensor %s: connection failed: %s", self.label, exc)
                delay_s = min(delay_s * 2, self._max_delay_s)
            # Jitter keeps several beds from retrying in lockstep after a shared outage.
            wait_s = delay_s * random.uniform(0.5, 1.0)
            logger.info("BLE sensor %s: reconnecting in %.2f s", self.label, wait_s)
            await asyncio.sleep(wait_s)

    async def _find(self) -> BLEDevice | None:
        if self.address is not None:
            return await BleakScanner.find_device_by_address(
                self.address, timeout=self._scan_timeout_s, **self._scanner_options()
            )
        wanted_service = self._service_uuid

        def matches(device: BLEDevice, advertisement: AdvertisementData) -> bool:
            return (
                advertisement.local_name == self._name
                and wanted_service in advertisement.service_uuids
            )

        return await BleakScanner.find_device_by_filter(
            matches, timeout=self._scan_timeout_s, **self._scanner_options()
        )

    def _scanner_options(self) -> BleakScanner.ExtraArgs:
        # bleak picks the platform backend only when no backend argument is given.
        if self._scanner_backend is None:
            return {}
        return {"backend": self._scanner_backend}

    async def _session(self) -> None:
        device = await self._find()
        if device is None:
            raise BleakError(f"not found within {self._scan_timeout_s:g} s of scanning")
        self.device_address = device.address
        if self._discover_afresh and self._client_backend is None:
            # bleak keeps BlueZ's service cache; a sensor whose firmware changed its
            # services would otherwise be seen with the old ones forever.
            await clear_cache(device.address)
        disconnected = asyncio.Event()
        client = await establish_connection(
            BleakClient, device, self.label,
            disconnected_callback=lambda _client: disconnected.set(),
            max_attempts=CONNECT_ATTEMPTS, backend=self._client_backend,
            use_services_cache=not self._discover_afresh,
        )
        try:
            await self._subscribe(client)
            self._discover_afresh = False
            self.connections += 1
            self.connected.set()
            self._report_link(True)
            logger.info("BLE sensor %s: connected to %s and subscribed",
                        self.label, device.address)
            await self._wait_until_lost(disconnected)
        finally:
            if self.connected.is_set():
                self.connected.clear()
                self._report_link(False)
            if client.is_connected:
                await client.disconnect()

    def _report_link(self, connected: bool) -> None:
        if self._on_link_change is not None:
            self._on_link_change(connected)

    async def _subscribe(self, client: BleakClient) -> None:
        if (self._service_uuid is not None
                and client.services.get_service(self._service_uuid) is None):
            self._rediscover_next_time()
            raise MissingCharacteristicError(
                f"service {self._service_uuid} missing after discovery; it will be "
                "discovered afresh at the next connection"
            )
        found = 0
        for uuid in SUBSCRIBED_CHARACTERISTICS:
            characteristic = client.services.get_characteristic(uuid)
            if characteristic is None:
                continue
            await client.start_notify(characteristic, self._on_notification)
            if uuid == POLAR_PMD_DATA_UUID:
                await self._start_polar_ecg(client)
            if uuid == BATTERY_LEVEL_UUID:
                await self._read_battery(client, characteristic)
            else:
                found += 1
        if not found:
            self._rediscover_next_time()
            raise MissingCharacteristicError(
                "no known measurement characteristic on this sensor; its services "
                "will be discovered afresh at the next connection"
            )

    async def _read_battery(self, client: BleakClient,
                            characteristic: BleakGATTCharacteristic) -> None:
        # Many sensors notify their battery level only when it changes.
        try:
            value = await client.read_gatt_char(characteristic)
        except BleakError as exc:
            logger.info("BLE sensor %s: battery level unreadable: %s", self.label, exc)
            return
        self._on_notification(characteristic, value)

    def _rediscover_next_time(self) -> None:
        self._discover_afresh = True
        self.rediscoveries += 1

    async def _start_polar_ecg(self, client: BleakClient) -> None:
        control_point = client.services.get_characteristic(POLAR_PMD_CONTROL_POINT_UUID)
        if control_point is None:
            raise MissingCharacteristicError("PMD data without its control point")
        responses: asyncio.Queue[bytes] = asyncio.Queue()
        await client.start_notify(
            control_point, lambda _char, data: responses.put_nowait(bytes(data))
        )
        await client.write_gatt_char(control_point, start_ecg_request(), response=True)
        async with asyncio.timeout(PMD_RESPONSE_TIMEOUT_S):
            response = await responses.get()
        error = start_ecg_error(response)
        if error is not None:
            raise BleakError(error)
        logger.info("BLE sensor %s: Polar ECG stream started", self.label)

    async def _wait_until_lost(self, disconnected: asyncio.Event) -> None:
        if self._silence_timeout_s is None:
            await disconnected.wait()
            logger.warning("BLE sensor %s: disconnected", self.label)
            return
        while not disconnected.is_set():
            self._activity.clear()
            activity = asyncio.ensure_future(self._activity.wait())
            lost = asyncio.ensure_future(disconnected.wait())
            done, pending = await asyncio.wait(
                {activity, lost}, timeout=self._silence_timeout_s,
                return_when=asyncio.FIRST_COMPLETED,
            )
            for task in pending:
                task.cancel()
            if not done:
                logger.warning("BLE sensor %s: no notification for %.1f s; reconnecting",
                               self.label, self._silence_timeout_s)
                return
        logger.warning("BLE sensor %s: disconnected", self.label)

    def _on_notification(self, characteristic: BleakGATTCharacteristic,
                         data: bytearray) -> None:
        uuid = characteristic.uuid
        try:
            value = DECODERS[uuid](bytes(data))
            measurements = measurements_from(value)
        except ProtocolError as exc:
            self._reject(uuid, bytes(data), exc)
            return
        if isinstance(value, BatteryLevel):
            self.battery_percent = value.percent
            logger.info("BLE sensor %s: battery at %d %%", self.label, value.percent)
            if self._on_battery is not None:
                self._on_battery(value.percent)
            return
        self._activity.set()
        if isinstance(value, PolarEcgFrame):
            self._deliver_ecg(value)
            return
        if not measurements:
            logger.debug("BLE sensor %s: %s carried no valid value", self.label, uuid)
            return
        self.readings += 1
        self._on_reading(
            BleReading(self.device_address, uuid, self._clock(), measurements)
        )

    def _deliver_ecg(self, frame: PolarEcgFrame) -> None:
        first_index = self._ecg_counter.number(frame)
        self.readings += 1
        if self._on_ecg is not None:
            self._on_ecg(BleEcgSamples(
                self.device_address, first_index, frame.samples_uv, self._clock()
            ))

    def _reject(self, uuid: str, data: bytes, error: ProtocolError) -> None:
        self.rejected += 1
        if (self.rejected <= REJECTIONS_LOGGED_IN_FULL
                or self.rejected % REJECTION_LOG_EVERY == 0):
            logger.warning(
                "BLE sensor %s: rejected notification %d of %s (%s): %s",
                self.label, self.rejected, uuid, data.hex(), error,
            )
