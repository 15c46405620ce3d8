"""The agent on a bed with Bluetooth sensors only: limits, local alarms, acknowledging.

Central is unreachable here, so everything waits in the agent's buffer, where the
test reads it. The sensors run on bumble's in-process link.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.agent import BedsideAgent
from edge_agent.ble_sensors import BleBackends
from edge_agent.config import parse_config
from edge_agent.sources.bumble_backend import bumble_backends
from firmware_sim.ble.peripheral import SimulatedSensor
from firmware_sim.ble.radio import VirtualRadio
from firmware_sim.ble.sensors import pulse_oximeter
from protocol.messages import AlarmAcknowledge, VitalsNumerics, decode_device_message

OXIMETER_ADDRESS = "E1:E1:E1:E1:E1:01"
WAIT_S = 10.0


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
async def bed(tmp_path: Path) -> AsyncIterator[tuple[BedsideAgent, SimulatedSensor]]:
    radio = VirtualRadio()
    # A desaturating patient: SpO2 below the default low limit of 90 %.
    oximeter = pulse_oximeter(radio, OXIMETER_ADDRESS, [(85.0, 110.0)])
    host = radio.make_device("aura-edge", "E0:E0:E0:E0:E0:00")
    await host.power_on()
    await oximeter.start()
    config = parse_config({
        "device": {"id": "bed-5-ble", "secret": "x"},
        "central": {"url": f"ws://127.0.0.1:{closed_port()}/ingest"},
        "buffer": {"path": str(tmp_path / "buffer.sqlite3")},
        "alarms": {"limits": {"spo2": {"low": 90, "delay_s": 0}}},
        "ble": {"scan_timeout_s": 2.0, "reconnect_min_delay_s": 0.1,
                "reconnect_max_delay_s": 0.5, "disconnect_grace_s": 2.0,
                "sensors": [{"address": OXIMETER_ADDRESS}]},
    })
    agent = BedsideAgent(config, ble_backends=BleBackends(*bumble_backends(host)))
    tasks = [asyncio.create_task(agent.run()), asyncio.create_task(oximeter.run(0.2))]
    await asyncio.wait_for(agent.ready.wait(), WAIT_S)
    try:
        yield agent, oximeter
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await oximeter.stop_background_tasks()


async def local_alarms(agent: BedsideAgent) -> list[tuple[str, str, str]]:
    async with agent.buffer.db.execute(
        "SELECT alarm_id, kind, state FROM local_alarms ORDER BY id"
    ) as cursor:
        return [tuple(row) for row in await cursor.fetchall()]


async def buffered_values(agent: BedsideAgent) -> dict[str, float]:
    messages = [
        decode_device_message(message.body)
        for message in await agent.buffer.next_batch(100)
    ]
    return {
        measurement.code: measurement.value
        for message in messages if isinstance(message, VitalsNumerics)
        for measurement in message.measurements
    }


async def wait_for_alarm(agent: BedsideAgent, kind: str, state: str) -> str:
    async with asyncio.timeout(WAIT_S):
        while True:
            for alarm_id, found_kind, found_state in await local_alarms(agent):
                if (found_kind, found_state) == (kind, state):
                    return alarm_id
            await asyncio.sleep(0.05)


async def test_ble_numerics_buffered_and_limit_alarmed(bed) -> None:
    agent, _ = bed
    alarm_id = await wait_for_alarm(agent, "spo2_low", "raised")
    assert alarm_id.startswith("spo2_low-")
    # The alarm is buffered ahead of the numerics that raised it.
    async with asyncio.timeout(WAIT_S):
        while not (values := await buffered_values(agent)):
            await asyncio.sleep(0.05)
    assert values["MDC_PULS_OXIM_SAT_O2"] == 85.0
    assert values["MDC_PULS_OXIM_PULS_RATE"] == 110.0


async def test_lost_oximeter_alarm_raised_and_cleared(bed) -> None:
    agent, oximeter = bed
    await wait_for_alarm(agent, "spo2_low", "raised")
    await oximeter.leave_range()
    raised_id = await wait_for_alarm(agent, "sensor_disconnected", "raised")
    await oximeter.return_to_range()
    cleared_id = await wait_for_alarm(agent, "sensor_disconnected", "cleared")
    assert cleared_id == raised_id
    assert ("sensor_silent" not in
            {kind for _, kind, _ in await local_alarms(agent)})


async def test_acknowledged_condition_alarm_stays(bed) -> None:
    agent, oximeter = bed
    await oximeter.leave_range()
    alarm_id = await wait_for_alarm(agent, "sensor_disconnected", "raised")
    await agent._on_alarm_acknowledge(AlarmAcknowledge(
        alarm_id=alarm_id, kind="sensor_disconnected", acknowledged_by="Ana Nurse",
        acknowledged_at=datetime.now(UTC),
    ))
    assert agent.condition_alarms is not None
    # Acknowledging silences the alarm; only the returning data clears it.
    assert agent.condition_alarms.alarm_id_of("sensor_disconnected") == alarm_id
    await oximeter.return_to_range()
    await wait_for_alarm(agent, "sensor_disconnected", "cleared")


async def test_low_sensor_battery_alarmed(bed) -> None:
    agent, oximeter = bed
    await wait_for_alarm(agent, "spo2_low", "raised")
    await oximeter.set_battery(9)
    await wait_for_alarm(agent, "sensor_battery_low", "raised")
    await oximeter.set_battery(80)
    await wait_for_alarm(agent, "sensor_battery_low", "cleared")
