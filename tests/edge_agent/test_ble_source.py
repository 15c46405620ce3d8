"""The bleak source against simulated sensors on bumble's in-process link.

The source's bleak code runs unmodified; only the backend classes are bumble ones.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

import numpy as np
import pytest
from bleak import BleakClient
from bleak.exc import BleakError
from bumble import att, gatt
from bumble.core import UUID, AdvertisingData

from edge_agent.sources.ble import BleReading, BleSensorSource
from edge_agent.sources.ble_readings import BleEcgSamples
from edge_agent.sources.bumble_backend import bumble_backends
from firmware_sim.ble.peripheral import Feed, SimulatedSensor
from firmware_sim.ble.polar import SAMPLES_PER_FRAME, PolarH10
from firmware_sim.ble.radio import VirtualRadio
from firmware_sim.ble.sensors import (
    blood_pressure_monitor,
    heart_rate_sensor,
    heart_rates,
    pulse_oximeter,
    thermometer,
)
from protocol.gatt import HEART_RATE_SERVICE_UUID, PULSE_OXIMETER_SERVICE_UUID

SENSOR_ADDRESS = "F1:F1:F1:F1:F1:F1"
CENTRAL_ADDRESS = "F0:F0:F0:F0:F0:F0"
WAIT_S = 5.0


class Harness:
    """A sensor, a source reading it through the bumble backend, and its readings."""

    def __init__(self, sensor: SimulatedSensor, source: BleSensorSource,
                 readings: asyncio.Queue[BleReading]) -> None:
        self.sensor = sensor
        self.source = source
        self.readings = readings

    async def next_reading(self) -> BleReading:
        return await asyncio.wait_for(self.readings.get(), WAIT_S)

    async def connected(self) -> None:
        await asyncio.wait_for(self.source.connected.wait(), WAIT_S)


MakeSensor = Callable[[VirtualRadio, str], SimulatedSensor]


@pytest.fixture
async def start() -> AsyncIterator[Callable[..., Awaitable[Harness]]]:
    tasks: list[asyncio.Task[None]] = []
    sensors: list[SimulatedSensor] = []

    async def start_harness(
        make_sensor: MakeSensor, by_name: tuple[str, str] | None = None,
        wait_connected: bool = True, **options: object,
    ) -> Harness:
        radio = VirtualRadio()
        sensor = make_sensor(radio, SENSOR_ADDRESS)
        sensors.append(sensor)
        central = radio.make_device("agent", CENTRAL_ADDRESS)
        await central.power_on()
        await sensor.start()
        scanner, client = bumble_backends(central)
        readings: asyncio.Queue[BleReading] = asyncio.Queue()
        name, service = by_name or (None, None)
        source = BleSensorSource(
            None if by_name else SENSOR_ADDRESS, readings.put_nowait,
            name=name, service_uuid=service, scanner_backend=scanner,
            client_backend=client, scan_timeout_s=2.0,
            reconnect_min_delay_s=0.01, reconnect_max_delay_s=0.05, **options,
        )
        tasks.append(asyncio.create_task(source.run()))
        harness = Harness(sensor, source, readings)
        if wait_connected:
            await harness.connected()
        return harness

    yield start_harness
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for sensor in sensors:
        await sensor.stop_background_tasks()


def values(reading: BleReading) -> dict[str, float]:
    return {item.code: item.value for item in reading.measurements}


async def test_heart_rate_reaches_callback(start) -> None:
    harness = await start(lambda radio, address: heart_rate_sensor(radio, address, [72]))
    await harness.sensor.step()
    reading = await harness.next_reading()
    assert reading.address == SENSOR_ADDRESS
    assert values(reading) == {"MDC_ECG_HEART_RATE": 72.0}
    assert reading.measurements[0].unit == "/min"


async def test_pulse_oximeter_values(start) -> None:
    harness = await start(pulse_oximeter)
    await harness.sensor.step()
    reading = await harness.next_reading()
    assert values(reading) == {"MDC_PULS_OXIM_SAT_O2": 98.0,
                               "MDC_PULS_OXIM_PULS_RATE": 72.0}


async def test_blood_pressure_indications(start) -> None:
    harness = await start(blood_pressure_monitor)
    await harness.sensor.step()
    reading = await harness.next_reading()
    assert values(reading) == {"MDC_PRESS_BLD_NONINV_SYS": 120.0,
                               "MDC_PRESS_BLD_NONINV_DIA": 80.0,
                               "MDC_PRESS_BLD_NONINV_MEAN": 93.0}


async def test_thermometer_in_celsius(start) -> None:
    harness = await start(thermometer)
    await harness.sensor.step()
    reading = await harness.next_reading()
    assert values(reading) == {"MDC_TEMP_BODY": 36.8}
    assert reading.measurements[0].unit == "Cel"


async def test_reading_becomes_valid_message(start) -> None:
    from datetime import UTC, datetime

    from protocol.messages import decode_device_message, encode

    harness = await start(thermometer)
    await harness.sensor.step()
    reading = await harness.next_reading()
    message = reading.to_message("bed-1-ble", 7, datetime.now(UTC))
    assert decode_device_message(encode(message)) == message


async def test_battery_level_tracked(start) -> None:
    harness = await start(heart_rate_sensor)
    await harness.sensor.set_battery(41)
    for _ in range(50):
        if harness.source.battery_percent == 41:
            break
        await asyncio.sleep(0.01)
    assert harness.source.battery_percent == 41


async def test_malformed_notification_counted_and_skipped(start, caplog) -> None:
    harness = await start(lambda radio, address: heart_rate_sensor(radio, address, [64]))
    harness.sensor.send_malformed(b"\xe0\x48")  # reserved flag bits set
    with caplog.at_level(logging.WARNING, logger="edge_agent.sources.ble"):
        await harness.sensor.step()
        await harness.sensor.step()
        reading = await harness.next_reading()
    assert values(reading) == {"MDC_ECG_HEART_RATE": 64.0}
    assert harness.source.rejected == 1
    assert SENSOR_ADDRESS in caplog.text
    assert "reserved bits" in caplog.text


async def test_implausible_value_rejected(start) -> None:
    harness = await start(lambda radio, address: thermometer(radio, address, [52.0]))
    await harness.sensor.step()
    await harness.sensor.step()
    await asyncio.sleep(0.05)
    assert harness.source.rejected == 2
    assert harness.readings.empty()


async def test_dropped_link_reconnects_and_resubscribes(start) -> None:
    harness = await start(lambda radio, address: heart_rate_sensor(radio, address,
                                                                   [70, 71, 72]))
    await harness.sensor.step()
    assert values(await harness.next_reading()) == {"MDC_ECG_HEART_RATE": 70.0}
    await harness.sensor.drop_link()
    for _ in range(200):
        if harness.source.connections == 2:
            break
        await asyncio.sleep(0.01)
    assert harness.source.connections == 2
    await harness.sensor.step()
    assert values(await harness.next_reading()) == {"MDC_ECG_HEART_RATE": 71.0}


async def test_silent_sensor_replaced(start) -> None:
    harness = await start(heart_rate_sensor, silence_timeout_s=0.1)
    harness.sensor.notifying = False
    for _ in range(200):
        if harness.source.connections >= 2:
            break
        await asyncio.sleep(0.01)
    assert harness.source.connections >= 2


def polar_strap(radio: VirtualRadio, address: str) -> PolarH10:
    # A sawtooth is enough to check numbering; the ECG analysis has its own tests.
    return PolarH10(radio, address, np.arange(-500, 500, 3))


async def test_polar_ecg_started_and_numbered(start) -> None:
    frames: asyncio.Queue[BleEcgSamples] = asyncio.Queue()
    harness = await start(polar_strap, on_ecg=frames.put_nowait)
    assert harness.sensor.ecg.active  # the source wrote the start request
    await harness.sensor.step()
    await harness.sensor.step()
    first = await asyncio.wait_for(frames.get(), WAIT_S)
    second = await asyncio.wait_for(frames.get(), WAIT_S)
    assert first.address == SENSOR_ADDRESS
    assert len(first.samples_uv) == SAMPLES_PER_FRAME
    assert first.samples_uv[:3] == (-500, -497, -494)
    assert first.first_sample_index == 0
    assert second.first_sample_index == SAMPLES_PER_FRAME


async def test_polar_ecg_restarted_after_reconnect(start) -> None:
    frames: asyncio.Queue[BleEcgSamples] = asyncio.Queue()
    harness = await start(polar_strap, on_ecg=frames.put_nowait)
    await harness.sensor.step()
    assert (await asyncio.wait_for(frames.get(), WAIT_S)).first_sample_index == 0
    await harness.sensor.drop_link()
    assert not harness.sensor.ecg.active
    await harness.sensor.step()  # a frame the strap took while nobody listened
    for _ in range(200):
        if harness.source.connections == 2:
            break
        await asyncio.sleep(0.01)
    assert harness.sensor.ecg.active
    await harness.sensor.step()
    after = await asyncio.wait_for(frames.get(), WAIT_S)
    assert after.first_sample_index == 2 * SAMPLES_PER_FRAME


async def test_sensor_found_by_name_and_service(start) -> None:
    harness = await start(
        lambda radio, address: heart_rate_sensor(radio, address, [66]),
        by_name=("AURA HR strap", HEART_RATE_SERVICE_UUID),
    )
    await harness.sensor.step()
    reading = await harness.next_reading()
    assert reading.address == SENSOR_ADDRESS
    assert values(reading) == {"MDC_ECG_HEART_RATE": 66.0}


async def test_missing_characteristic_rediscovers(start) -> None:
    harness = await start(battery_only, wait_connected=False)
    for _ in range(300):
        if harness.source.rediscoveries >= 2:
            break
        await asyncio.sleep(0.01)
    assert harness.source.rediscoveries >= 2
    assert harness.source.connections == 0
    assert not harness.source.connected.is_set()


def battery_only(radio: VirtualRadio, address: str) -> SimulatedSensor:
    return SimulatedSensor(radio.make_device("AURA battery", address), [])


async def test_link_changes_reported(start) -> None:
    changes: list[bool] = []
    harness = await start(heart_rate_sensor, on_link_change=changes.append)
    assert changes == [True]
    await harness.sensor.drop_link()
    for _ in range(200):
        if len(changes) >= 3:
            break
        await asyncio.sleep(0.01)
    assert changes[:3] == [True, False, True]


async def test_two_sources_share_one_host() -> None:
    radio = VirtualRadio()
    strap = heart_rate_sensor(radio, SENSOR_ADDRESS, [80])
    oximeter = pulse_oximeter(radio, "F2:F2:F2:F2:F2:F2")
    central = radio.make_device("agent", CENTRAL_ADDRESS)
    await central.power_on()
    await strap.start()
    await oximeter.start()
    scanner, client = bumble_backends(central)
    readings: asyncio.Queue[BleReading] = asyncio.Queue()
    sources = [
        BleSensorSource(address, readings.put_nowait, scanner_backend=scanner,
                        client_backend=client, scan_timeout_s=2.0,
                        reconnect_min_delay_s=0.01, reconnect_max_delay_s=0.05)
        for address in (SENSOR_ADDRESS, "F2:F2:F2:F2:F2:F2")
    ]
    tasks = [asyncio.create_task(source.run()) for source in sources]
    try:
        for source in sources:
            await asyncio.wait_for(source.connected.wait(), WAIT_S)
        await strap.step()
        await oximeter.step()
        received = {
            (await asyncio.wait_for(readings.get(), WAIT_S)).address for _ in range(2)
        }
        assert received == {SENSOR_ADDRESS, "F2:F2:F2:F2:F2:F2"}
        assert all(source.connections == 1 for source in sources)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await strap.stop_background_tasks()
        await oximeter.stop_background_tasks()



class MislabelledStrap(SimulatedSensor):
    """Advertises the Pulse Oximeter service but serves only Heart Rate."""

    async def start(self) -> None:
        await super().start()
        await self.device.stop_advertising()
        self.device.advertising_data = bytes(AdvertisingData([
            (AdvertisingData.COMPLETE_LOCAL_NAME, b"AURA mislabelled"),
            (AdvertisingData.COMPLETE_LIST_OF_16_BIT_SERVICE_CLASS_UUIDS,
             UUID.from_16_bits(0x1822).to_bytes()),
        ]))
        await self._advertise()


def mislabelled_strap(radio: VirtualRadio, address: str) -> SimulatedSensor:
    feed = Feed(gatt.GATT_HEART_RATE_SERVICE,
                gatt.GATT_HEART_RATE_MEASUREMENT_CHARACTERISTIC, heart_rates([60]))
    return MislabelledStrap(radio.make_device("AURA mislabelled", address), [feed])


async def test_missing_bound_service_rediscovers(start) -> None:
    harness = await start(mislabelled_strap, wait_connected=False,
                          by_name=("AURA mislabelled", PULSE_OXIMETER_SERVICE_UUID))
    for _ in range(300):
        if harness.source.rediscoveries >= 2:
            break
        await asyncio.sleep(0.01)
    assert harness.source.rediscoveries >= 2
    assert harness.source.connections == 0


def refuse_read(connection: object) -> bytes:
    raise att.ATT_Error(att.ErrorCode.INSUFFICIENT_AUTHENTICATION)


async def test_bumble_errors_become_bleak_errors() -> None:
    radio = VirtualRadio()
    locked = gatt.Characteristic(
        UUID.from_16_bits(0x2A38), gatt.Characteristic.Properties.READ,
        gatt.Characteristic.READABLE, gatt.CharacteristicValue(read=refuse_read),
    )
    sensor = SimulatedSensor(radio.make_device("AURA locked", SENSOR_ADDRESS), [],
                             controls=[(gatt.GATT_HEART_RATE_SERVICE, locked)])
    central = radio.make_device("agent", CENTRAL_ADDRESS)
    await central.power_on()
    await sensor.start()
    _, client_backend = bumble_backends(central)
    async with BleakClient(SENSOR_ADDRESS, backend=client_backend) as client:
        characteristic = client.services.get_characteristic(
            "00002a38-0000-1000-8000-00805f9b34fb"
        )
        assert characteristic is not None
        with pytest.raises(BleakError, match="reading .* failed.*AUTHENTICATION"):
            await client.read_gatt_char(characteristic)
        assert client.is_connected
    await sensor.stop_background_tasks()


@pytest.mark.parametrize("steps_before_cancel", [0, 1, 3, 10])
async def test_cancelled_connect_leaves_no_link(steps_before_cancel: int) -> None:
    radio = VirtualRadio()
    strap = heart_rate_sensor(radio, SENSOR_ADDRESS)
    central = radio.make_device("agent", CENTRAL_ADDRESS)
    await central.power_on()
    await strap.start()
    _, client_backend = bumble_backends(central)
    client = BleakClient(SENSOR_ADDRESS, backend=client_backend)
    connecting = asyncio.create_task(client.connect())
    for _ in range(steps_before_cancel):
        await asyncio.sleep(0)
    connecting.cancel()
    await asyncio.gather(connecting, return_exceptions=True)
    for _ in range(200):
        settled = not (strap.connected or central.is_le_connecting)
        if settled and strap.device.is_advertising:
            break
        await asyncio.sleep(0.01)
    await strap.stop_background_tasks()
    assert not central.is_le_connecting
    assert not strap.connected


async def test_battery_read_at_connection(start) -> None:
    levels: list[int] = []
    harness = await start(heart_rate_sensor, on_battery=levels.append)
    assert harness.source.battery_percent == 90
    assert levels[:1] == [90]
