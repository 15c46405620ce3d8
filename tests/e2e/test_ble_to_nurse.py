"""Bluetooth sensors to the nurse: a chest strap and a pulse oximeter on bumble's link.

A simulated Polar H10 streams MIT-BIH record 100 as 130 Hz ECG with its heart rate,
and a simulated pulse oximeter sends SpO2 and pulse rate. The agent runs in this
process with the bumble bleak backend on the same in-process link (no radio), and
talks to a real central, started as its own process on a fresh database. A nurse
subscribed on /events must see the vitals and the ECG, the strap's dropped link must
be recovered, and the oximeter carried out of range must raise the
sensor_disconnected alarm and clear it once its data returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect

from demo.stack import ASSIGNED_NURSE, DEVICE_ID, PATIENT_ID, Stack
from edge_agent.agent import BedsideAgent
from edge_agent.ble_sensors import BleBackends
from edge_agent.config import parse_config
from edge_agent.sources.bumble_backend import bumble_backends
from firmware_sim.ble.polar import FRAME_INTERVAL_S, polar_h10
from firmware_sim.ble.radio import VirtualRadio
from firmware_sim.ble.sensors import pulse_oximeter
from protocol.messages import (
    Authenticate,
    PatientEmergency,
    Subscribe,
    Subscribed,
    VitalsUpdate,
    decode_server_event,
    encode,
)

pytestmark = pytest.mark.timeout(120)

RECORD = Path(__file__).parents[2] / "firmware_sim" / "recordings" / "100"
STRAP_ADDRESS = "D1:D1:D1:D1:D1:01"
OXIMETER_ADDRESS = "D1:D1:D1:D1:D1:02"
AGENT_ADDRESS = "D0:D0:D0:D0:D0:00"
OXIMETER_NAME = "AURA pulse oximeter"
OXIMETER_INTERVAL_S = 0.5
# Long enough for both sensors to connect at start-up on a loaded machine.
GRACE_S = 3.0
HEART_RATE = "MDC_ECG_HEART_RATE"
SPO2 = "MDC_PULS_OXIM_SAT_O2"


class Ward:
    """Central, the simulated sensors, the agent and a nurse's event stream."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.events: list[object] = []
        self.radio = VirtualRadio()
        self.strap = polar_h10(self.radio, STRAP_ADDRESS, RECORD)
        self.oximeter = pulse_oximeter(
            self.radio, OXIMETER_ADDRESS, [(98.0, 74.0), (97.0, 75.0)]
        )
        self.agent: BedsideAgent | None = None

    async def start_agent(self, tmp_path: Path) -> BedsideAgent:
        host = self.radio.make_device("aura-edge", AGENT_ADDRESS)
        await host.power_on()
        config = parse_config({
            "device": {"id": DEVICE_ID, "secret": self.stack.device_secret},
            "central": {"url": self.stack.ingest_url},
            "buffer": {"path": str(tmp_path / "agent" / "buffer.sqlite3")},
            # Frames arrive in 0.56 s bursts; the rate is not what this test checks.
            "dsp": {"check_sample_rate": False},
            "ble": {
                "scan_timeout_s": 2.0, "reconnect_min_delay_s": 0.1,
                "reconnect_max_delay_s": 0.5, "disconnect_grace_s": GRACE_S,
                "sensors": [
                    {"address": STRAP_ADDRESS, "silence_timeout_s": 5.0},
                    {"name": OXIMETER_NAME, "service": "pulse_oximeter"},
                ],
            },
        })
        self.agent = BedsideAgent(
            config, ble_backends=BleBackends(*bumble_backends(host))
        )
        return self.agent

    def values(self, code: str) -> list[float]:
        return [m.value for e in self.events if isinstance(e, VitalsUpdate)
                for m in e.measurements or [] if m.code == code]

    def waveforms(self) -> list[VitalsUpdate]:
        return [e for e in self.events
                if isinstance(e, VitalsUpdate) and e.waveform is not None]

    def alarms(self, kind: str) -> list[PatientEmergency]:
        return [e for e in self.events
                if isinstance(e, PatientEmergency) and e.kind == kind]


@pytest.fixture
async def ward(tmp_path: Path, database_url: str) -> AsyncIterator[Ward]:
    stack = Stack(workdir=tmp_path, database_url=database_url)
    await asyncio.to_thread(stack.seed)
    await asyncio.to_thread(stack.start_central)
    tasks: list[asyncio.Task[None]] = []
    ward = Ward(stack)
    try:
        token = await asyncio.to_thread(stack.login, ASSIGNED_NURSE)
        tasks.append(asyncio.create_task(collect_events(stack, token, ward.events)))
        await wait_for(lambda: any(isinstance(e, Subscribed) for e in ward.events),
                       10, "the subscription")
        await ward.strap.start()
        await ward.oximeter.start()
        tasks.append(asyncio.create_task(ward.strap.run(FRAME_INTERVAL_S)))
        tasks.append(asyncio.create_task(ward.oximeter.run(OXIMETER_INTERVAL_S)))
        agent = await ward.start_agent(tmp_path)
        tasks.append(asyncio.create_task(agent.run()))
        yield ward
    finally:
        for task in reversed(tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await ward.strap.stop_background_tasks()
        await ward.oximeter.stop_background_tasks()
        await asyncio.to_thread(stack.stop_all)


async def collect_events(stack: Stack, token: str, events: list[object]) -> None:
    async with connect(stack.events_url) as websocket:
        await websocket.send(encode(Authenticate(token=token)).decode())
        await websocket.send(encode(Subscribe(patient_id=PATIENT_ID)).decode())
        async for frame in websocket:
            events.append(decode_server_event(frame))


async def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.1)


def source_of(ward: Ward, index: int):  # type: ignore[no-untyped-def]
    assert ward.agent is not None and ward.agent.ble is not None
    return ward.agent.ble.sources[index]


async def test_ble_vitals_reach_nurse_and_link_faults_recover(ward: Ward) -> None:
    await wait_for(lambda: len(ward.values(SPO2)) >= 2, 20, "SpO2 at the nurse")
    await wait_for(lambda: len(ward.values(HEART_RATE)) >= 3, 20,
                   "heart rate at the nurse")
    assert set(ward.values(SPO2)) <= {98.0, 97.0}
    # The strap's own rate (60 /min) and the rate of record 100's ECG (74 to 76).
    assert all(55.0 <= rate <= 85.0 for rate in ward.values(HEART_RATE))
    await wait_for(lambda: bool(ward.waveforms()), 10, "ECG at the nurse")
    segments = [update.waveform for update in ward.waveforms()]
    assert {segment.sample_rate_hz for segment in segments} == {130.0}
    assert {segment.lead for segment in segments} == {"I"}

    # A dropped link is recovered well within the grace time: no alarm.
    strap = source_of(ward, 0)
    alarms_before = len(ward.alarms("sensor_disconnected"))
    await ward.strap.drop_link()
    await wait_for(lambda: strap.connections >= 2, 10, "the strap to reconnect")
    waveforms_before = len(ward.waveforms())
    await wait_for(lambda: len(ward.waveforms()) > waveforms_before + 2, 10,
                   "ECG after the reconnection")
    assert len(ward.alarms("sensor_disconnected")) == alarms_before

    # The oximeter leaves the bed for longer than the grace time.
    await ward.oximeter.leave_range()
    await wait_for(
        lambda: len(ward.alarms("sensor_disconnected")) > alarms_before, 15,
        "the sensor_disconnected alarm",
    )
    raised = ward.alarms("sensor_disconnected")[alarms_before]
    assert raised.state == "raised"
    assert raised.category == "technical"
    assert raised.priority == "medium"
    assert OXIMETER_NAME in raised.evidence
    spo2_seen = len(ward.values(SPO2))

    await ward.oximeter.return_to_range()
    await wait_for(
        lambda: len(ward.alarms("sensor_disconnected")) > alarms_before + 1, 15,
        "the sensor_disconnected alarm to clear",
    )
    cleared = ward.alarms("sensor_disconnected")[alarms_before + 1]
    assert cleared.state == "cleared"
    assert cleared.alarm_id == raised.alarm_id
    await wait_for(lambda: len(ward.values(SPO2)) > spo2_seen, 10, "SpO2 again")
    assert not ward.alarms("sensor_silent")

