"""Simulated BLE sensors read through bumble's own GATT client on the in-process link."""

from __future__ import annotations

import asyncio

import pytest
from bumble.device import Device, Peer

from firmware_sim.ble.peripheral import SimulatedSensor, fixed, stepped
from firmware_sim.ble.radio import VirtualRadio
from firmware_sim.ble.sensors import (
    PLX_CONTINUOUS_MEASUREMENT,
    pulse_oximeter,
)
from protocol.gatt import PlxContinuousMeasurement

SENSOR_ADDRESS = "F2:F2:F2:F2:F2:F2"
WAIT_S = 5.0


async def connect(radio: VirtualRadio, sensor: SimulatedSensor) -> tuple[Device, Peer]:
    central = radio.make_device("central", "F3:F3:F3:F3:F3:F3")
    await central.power_on()
    await sensor.start()
    connection = await central.connect(sensor.device.random_address)
    peer = Peer(connection)
    await peer.discover_services()
    await peer.discover_characteristics()
    return central, peer


async def subscribe(peer: Peer) -> asyncio.Queue[bytes]:
    values: asyncio.Queue[bytes] = asyncio.Queue()
    [characteristic] = peer.get_characteristics_by_uuid(PLX_CONTINUOUS_MEASUREMENT)
    await characteristic.subscribe(values.put_nowait)
    return values


def test_stepped_source_repeats_last() -> None:
    source = stepped([b"a", b"b"])
    assert [source(step) for step in range(4)] == [b"a", b"b", b"b", b"b"]
    assert fixed(b"x")(9) == b"x"


def test_stepped_source_needs_values() -> None:
    with pytest.raises(ValueError):
        stepped([])


async def test_pulse_oximeter_notifies_steps() -> None:
    radio = VirtualRadio()
    sensor = pulse_oximeter(radio, SENSOR_ADDRESS, [(97.0, 60.0), (95.5, 61.0)])
    _, peer = await connect(radio, sensor)
    values = await subscribe(peer)
    await sensor.step()
    await sensor.step()
    first = PlxContinuousMeasurement.from_bytes(await asyncio.wait_for(values.get(), WAIT_S))
    second = PlxContinuousMeasurement.from_bytes(await asyncio.wait_for(values.get(), WAIT_S))
    assert first.normal.spo2_percent == 97.0
    assert second.normal.spo2_percent == 95.5
    assert second.normal.pulse_rate_bpm == 61.0


async def test_malformed_value_sent_once() -> None:
    radio = VirtualRadio()
    sensor = pulse_oximeter(radio, SENSOR_ADDRESS)
    _, peer = await connect(radio, sensor)
    values = await subscribe(peer)
    sensor.send_malformed(b"\xff")
    await sensor.step()
    await sensor.step()
    assert await asyncio.wait_for(values.get(), WAIT_S) == b"\xff"
    good = await asyncio.wait_for(values.get(), WAIT_S)
    assert PlxContinuousMeasurement.from_bytes(good).normal.spo2_percent == 98.0


async def test_stopped_notifications_send_nothing() -> None:
    radio = VirtualRadio()
    sensor = pulse_oximeter(radio, SENSOR_ADDRESS)
    _, peer = await connect(radio, sensor)
    values = await subscribe(peer)
    sensor.notifying = False
    await sensor.step()
    await asyncio.sleep(0.05)
    assert values.empty()


async def test_dropped_link_advertises_again() -> None:
    radio = VirtualRadio()
    sensor = pulse_oximeter(radio, SENSOR_ADDRESS)
    central, _ = await connect(radio, sensor)
    await sensor.drop_link()
    await asyncio.sleep(0.05)
    assert not sensor.connected
    connection = await asyncio.wait_for(
        central.connect(sensor.device.random_address), WAIT_S
    )
    assert sensor.connected
    assert connection.peer_address == sensor.device.random_address
