"""The bedside agent: sensor board and Bluetooth LE sensors in, analysis and alarms
locally, buffer, uplink out."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections import deque
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from edge_agent.alarms.catalog import AlarmKind
from edge_agent.alarms.limits import (
    HEART_RATE,
    RESPIRATION_RATE,
    SPO2,
    SYSTOLIC_BP,
    TEMPERATURE,
)
from edge_agent.buffer import MessageBuffer, Priority
from edge_agent.condition_alarms import ConditionAlarms
from edge_agent.config import AgentConfig
from edge_agent.dropped import BUFFER_WRITE_FAILED, describe_dropped
from edge_agent.ecg_stream import EcgStream, Outgoing, StreamFormat, utc_now
from edge_agent.sources.ble_readings import BleEcgSamples, BleReading
from edge_agent.sources.polar import POLAR_ECG_FORMAT
from edge_agent.sources.serial_board import SerialBoardSource
from edge_agent.supervision import ConditionUpdate, TechnicalSupervisor
from edge_agent.uplink import Uplink
from protocol.board import (
    EcgPayload,
    HelloPayload,
    NumericsPayload,
    StatusPayload,
    decode_payload,
)
from protocol.codes import VitalSign
from protocol.errors import ProtocolError
from protocol.framing import Frame
from protocol.messages import (
    AlarmAcknowledge,
    DeviceHello,
    DeviceMessage,
    Measurement,
    VitalsNumerics,
    encode,
)

if TYPE_CHECKING:
    from edge_agent.ble_sensors import BleBackends, BleSensorGroup

logger = logging.getLogger(__name__)

# ECG frames that arrive before the board's first HELLO are held, not dropped, until
# the sampling rate and scale are known. A board repeats HELLO every few seconds.
EARLY_FRAMES_LIMIT = 600
# Lost messages remembered for the gap report; beyond this they are only counted.
UNBUFFERED_LIMIT = 20_000
# Board numerics fields checked against the patient's alarm limits, by limit code.
LIMIT_CODES = {
    "spo2_percent": SPO2,
    "respiration_rate_bpm": RESPIRATION_RATE,
    "nibp_systolic_mmhg": SYSTOLIC_BP,
    "temperature_celsius": TEMPERATURE,
}
# Bluetooth measurements checked against the patient's alarm limits, by limit code.
BLE_LIMIT_CODES = {
    VitalSign.HEART_RATE.value.mdc_reference_id: HEART_RATE,
    VitalSign.SPO2.value.mdc_reference_id: SPO2,
    VitalSign.SYSTOLIC_BP.value.mdc_reference_id: SYSTOLIC_BP,
    VitalSign.TEMPERATURE.value.mdc_reference_id: TEMPERATURE,
}
# int16 bounds of waveform samples in the protocol; a chest strap's microvolts beyond
# them (over 32 mV, a saturated lead) are clipped.
WAVEFORM_SAMPLE_MIN, WAVEFORM_SAMPLE_MAX = -32768, 32767
# Sent messages unacknowledged this long count as a link outage for the link_lost
# alarm, before the uplink gives the connection up.
ACK_STALL_S = 5.0
# The buffer-full alarm clears once unsent messages fill less than this share of it.
BUFFER_ROOM_FRACTION = 0.5
# How often the technical conditions (sensor silent, link lost, rate) are evaluated.
SUPERVISION_INTERVAL_S = 1.0
# How often the agent logs its link and parser counters.
STATUS_INTERVAL_S = 60.0
# Frames waiting for analysis; at 10 frames/s this is minutes of slack before the
# serial reader has to drop anything.
FRAME_QUEUE_LIMIT = 4096

SensorInput = Frame | BleReading | BleEcgSamples


class BedsideAgent:
    """Wires the sensors, the ECG analysis, the buffer and the uplink together.

    ``ble_backends`` replaces the bleak backends chosen by the configuration; the
    tests pass bumble ones bound to an in-process link.
    """

    def __init__(
        self, config: AgentConfig, clock: Callable[[], datetime] = utc_now,
        ble_backends: BleBackends | None = None,
    ) -> None:
        self.config = config
        self.device_id = config.device.id
        self._clock = clock
        self.buffer = MessageBuffer(
            config.buffer.path, int(config.buffer.max_size_mb * 1_000_000)
        )
        self._dropped_reported = 0
        # Messages lost because the buffer could not be written (disk full, I/O
        # error), kept encoded so the loss can be reported as gaps once it works.
        self._unbuffered: list[bytes] = []
        self.unbuffered_total = 0
        self.uplink = Uplink(
            config.central, self.buffer, self.device_id, config.device_secret(),
            on_alarm_acknowledge=self._on_alarm_acknowledge,
        )

        self.source = (
            SerialBoardSource(
                config.serial.port, config.serial.baudrate, self._on_frame,
                config.serial.reopen_delay_s,
            )
            if config.serial is not None else None
        )
        self.ble: BleSensorGroup | None = None
        if config.ble.sensors:
            # Imported here, so a bed without Bluetooth sensors starts without
            # loading bleak and bumble.
            from edge_agent.ble_sensors import BleSensorGroup

            self.ble = BleSensorGroup(
                config.ble, self._on_frame, self._on_frame, self._on_sensor_link,
                self._on_sensor_data, ble_backends, self._on_sensor_battery,
            )
        # Without a sensor board, the agent's own conditions and the limits of
        # Bluetooth numerics have an alarm engine of their own (see condition_alarms).
        self.condition_alarms = (
            ConditionAlarms(self.device_id, config.analyzer_settings().limits, clock)
            if config.serial is None else None
        )

        self._frames: asyncio.Queue[SensorInput] = asyncio.Queue(FRAME_QUEUE_LIMIT)
        self.stream: EcgStream | None = None
        self._early_ecg: deque[EcgPayload] = deque(maxlen=EARLY_FRAMES_LIMIT)
        self.frames_dropped = 0
        self.ble_ecg_ignored = 0
        self.payloads_rejected = 0
        self.ready = asyncio.Event()
        self.supervisor: TechnicalSupervisor | None = None
        # Event-loop time of the analysis loop's latest pass; the systemd watchdog is
        # fed only while it keeps moving.
        self.last_progress = 0.0
        # Technical conditions as last reported, re-applied to a new ECG stream.
        self._conditions: dict[str, ConditionUpdate] = {}

    async def run(self) -> None:
        """Run until cancelled; the buffer is closed on the way out."""
        await self.buffer.open()
        alarms = self.config.alarms
        now = asyncio.get_running_loop().time()
        self.supervisor = TechnicalSupervisor(
            alarms.sensor_silent_s if self.source is not None else None,
            alarms.link_lost_s, self.config.dsp.check_sample_rate, now,
            sensor_disconnected_s=self.config.ble.disconnect_grace_s,
            battery_low_percent=self.config.ble.battery_low_percent,
        )
        if self.ble is not None:
            for label in self.ble.alarmed_labels():
                self.supervisor.watch_sensor(label, now)
        if self.buffer.corrupt_file_moved_to is not None:
            self.supervisor.buffer_corrupt_at_start(
                str(self.buffer.corrupt_file_moved_to), asyncio.get_running_loop().time()
            )
        try:
            await self._announce()
            async with asyncio.TaskGroup() as tasks:
                if self.source is not None:
                    tasks.create_task(self.source.run(), name="serial-source")
                if self.ble is not None:
                    tasks.create_task(self.ble.run(), name="ble-sensors")
                tasks.create_task(self.uplink.run(), name="uplink")
                tasks.create_task(self._process_frames(), name="analysis")
                tasks.create_task(self._report_status(), name="status")
                tasks.create_task(self._supervise(), name="supervision")
                if self.source is not None:
                    await self.source.opened.wait()
                self.ready.set()
        finally:
            # Keep the samples of the last partial chunk across a clean stop.
            if self.stream is not None:
                try:
                    await self._commit(self.stream.flush())
                except Exception:  # the buffer may be what failed; still close it
                    logger.exception("could not keep the last samples of %s",
                                     self.device_id)
            await self.buffer.close()
            logger.info("agent %s stopped", self.device_id)

    async def _supervise(self) -> None:
        assert self.supervisor is not None
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SUPERVISION_INTERVAL_S)
            now = loop.time()
            link_ok = (
                self.uplink.connected.is_set()
                and self.uplink.unacknowledged_for() < ACK_STALL_S
            )
            self.supervisor.link_changed(link_ok, now)
            budget = self.buffer.max_payload_bytes
            if budget and self.buffer.payload_bytes < budget * BUFFER_ROOM_FRACTION:
                self.supervisor.buffer_has_room()
            rate = self.stream.format.sample_rate_hz if self.stream else None
            for update in self.supervisor.poll(now, rate):
                await self._apply_condition(update)
            measured = self.supervisor.take_measured_rate()
            if measured is not None and self.stream is not None:
                changes = self.stream.analyzer.report_measured_sample_rate(measured)
                await self._commit(self.stream.changes_to_send(changes))

    async def _apply_condition(self, update: ConditionUpdate) -> None:
        self._conditions[update.kind] = update
        log = logger.warning if update.present else logger.info
        log("%s: technical condition %s %s: %s", self.device_id, update.kind,
            "present" if update.present else "ended", update.evidence)
        if (self.condition_alarms is not None
                and update.kind != AlarmKind.SAMPLE_RATE_MISMATCH):
            await self._commit(self.condition_alarms.set_condition(
                update.kind, update.present, update.evidence
            ))
            return
        if self.stream is None:
            return  # applied when the sensor's HELLO creates the stream
        changes = self.stream.analyzer.set_condition(
            update.kind, update.present, update.evidence
        )
        await self._commit(self.stream.changes_to_send(changes))

    async def _report_status(self) -> None:
        reported_failures = 0
        while True:
            await asyncio.sleep(STATUS_INTERVAL_S)
            if self.ble is not None:
                for sensor in self.ble.sources:
                    logger.info(
                        "%s: BLE sensor %s: %d connections, %d readings, %d rejected",
                        self.device_id, sensor.label, sensor.connections,
                        sensor.readings, sensor.rejected,
                    )
            if self.source is None:
                continue
            parser = self.source.parser
            if parser.crc_failures < reported_failures:
                reported_failures = 0  # the port was reopened with a fresh parser
            pending = await self.buffer.pending_count()
            logger.info(
                "%s: %d frames ok, %d CRC failures, %d bytes discarded, %d frames lost;"
                " %d messages waiting for central, %d sent, %d acknowledged",
                self.device_id, parser.frames_ok, parser.crc_failures,
                parser.bytes_discarded, parser.frames_lost, pending,
                self.uplink.sent, self.uplink.acknowledged,
            )
            if parser.crc_failures > reported_failures:
                logger.warning(
                    "%s: %d new corrupted frames from the sensor board; check the cable",
                    self.device_id, parser.crc_failures - reported_failures,
                )
                reported_failures = parser.crc_failures

    async def _announce(self) -> None:
        device = self.config.device
        await self.buffer.append(
            lambda seq: DeviceHello(
                device_id=self.device_id, seq=seq, sent_at=self._clock(),
                model=device.model, firmware="aura-edge 0.1", bed=device.bed,
            ),
            Priority.NUMERICS,
        )

    def _on_frame(self, frame: SensorInput) -> None:
        try:
            self._frames.put_nowait(frame)
        except asyncio.QueueFull:
            self.frames_dropped += 1
            if self.frames_dropped % 100 == 1:
                logger.warning("analysis is behind: %d sensor frames dropped",
                               self.frames_dropped)

    def _on_sensor_link(self, label: str, connected: bool) -> None:
        if not connected and self.supervisor is not None:
            now = asyncio.get_running_loop().time()
            self.supervisor.sensor_disconnected(label, now)

    def _on_sensor_data(self, label: str) -> None:
        if self.supervisor is not None:
            self.supervisor.sensor_data_arrived(label)

    def _on_sensor_battery(self, label: str, percent: int) -> None:
        if self.supervisor is not None:
            self.supervisor.sensor_battery(label, percent)

    async def _process_frames(self) -> None:
        idle_flush_s = self.config.dsp.waveform_chunk_s
        loop = asyncio.get_running_loop()
        while True:
            self.last_progress = loop.time()
            try:
                # asyncio.timeout rather than wait_for: on Python 3.11, wait_for can
                # swallow a cancellation that lands as the queue yields a frame, and
                # the agent then never stops.
                async with asyncio.timeout(idle_flush_s):
                    frame = await self._frames.get()
            except TimeoutError:
                # A quiet board must not leave its last samples waiting in memory.
                if self.stream is not None:
                    await self._commit(self.stream.flush())
                continue
            if isinstance(frame, BleReading):
                await self._commit_ble_reading(frame)
                continue
            if isinstance(frame, BleEcgSamples):
                await self._analyse_ble_ecg(frame)
                continue
            try:
                payload = decode_payload(frame)
            except ProtocolError as exc:
                self.payloads_rejected += 1
                logger.warning("board %s sent an invalid %s payload: %s",
                               self.device_id, frame.type, exc)
                continue
            await self._handle_payload(payload)

    async def _handle_payload(
        self, payload: HelloPayload | EcgPayload | NumericsPayload | StatusPayload
    ) -> None:
        if isinstance(payload, HelloPayload):
            await self._on_hello(payload)
            if self._early_ecg and self.stream is not None:
                newest = self._early_ecg[-1]
                self.stream.set_time_reference(
                    newest.first_sample_index + len(newest.samples), self._clock()
                )
            while self._early_ecg:
                await self._analyse(self._early_ecg.popleft())
        elif isinstance(payload, EcgPayload):
            if self.stream is None:
                self._early_ecg.append(payload)
                return
            await self._analyse(payload)
        elif isinstance(payload, NumericsPayload):
            await self._commit_board_numerics(payload)
        elif isinstance(payload, StatusPayload) and payload.leads_off:
            logger.warning("board %s reports leads off", self.device_id)

    async def _analyse(self, payload: EcgPayload) -> None:
        assert self.stream is not None
        if self.supervisor is not None:
            self.supervisor.samples_arrived(
                len(payload.samples), asyncio.get_running_loop().time()
            )
        out = self.stream.add_samples(payload.first_sample_index, list(payload.samples))
        await self._commit(out)

    async def _on_hello(self, hello: HelloPayload) -> None:
        stream_format = StreamFormat(
            lead=hello.lead, sample_rate_hz=hello.sample_rate_hz,
            scale_uv=hello.microvolts_per_count,
        )
        if self.stream is not None and self.stream.format == stream_format:
            return
        logger.info(
            "board %s (%s, firmware %s) streams lead %s at %.1f Hz, %.3f uV per count",
            self.device_id, hello.board_id, hello.firmware_version, hello.lead,
            hello.sample_rate_hz, hello.microvolts_per_count,
        )
        if not self._open_stream(stream_format):
            return
        expected = self.config.dsp.sample_rate_hz
        if expected is not None and expected != hello.sample_rate_hz:
            self._conditions["sample_rate_mismatch"] = ConditionUpdate(
                "sample_rate_mismatch", True,
                f"the sensor reports {hello.sample_rate_hz:g} Hz but this bed is "
                f"configured for {expected:g} Hz",
            )
        for update in list(self._conditions.values()):
            if update.present:
                await self._apply_condition(update)

    def _open_stream(self, stream_format: StreamFormat) -> bool:
        settings = self.config.analyzer_settings()
        try:
            settings.check(stream_format.sample_rate_hz)
        except ValueError as exc:
            logger.error("%s: cannot analyse the ECG: %s", self.device_id, exc)
            return False
        self.stream = EcgStream(
            self.device_id, stream_format, settings,
            self.config.dsp.waveform_chunk_s, self.config.dsp.numerics_interval_s,
            clock=self._clock,
        )
        if self.supervisor is not None:
            self.supervisor.restart_rate_window()
        return True

    async def _analyse_ble_ecg(self, chunk: BleEcgSamples) -> None:
        if self.source is not None:
            # The sensor board's lead is the bed's ECG; a strap would replace its
            # stream at every frame.
            self.ble_ecg_ignored += len(chunk.samples_uv)
            if self.ble_ecg_ignored == len(chunk.samples_uv):
                logger.warning("%s: ignoring the ECG of BLE sensor %s because the "
                               "sensor board provides the ECG", self.device_id,
                               chunk.address)
            return
        if self.stream is None:
            if not self._open_stream(POLAR_ECG_FORMAT):
                return
            logger.info("%s: ECG from BLE sensor %s, %g Hz", self.device_id,
                        chunk.address, POLAR_ECG_FORMAT.sample_rate_hz)
        assert self.stream is not None
        if self.supervisor is not None:
            self.supervisor.samples_arrived(
                len(chunk.samples_uv), asyncio.get_running_loop().time()
            )
        samples = [
            min(max(value, WAVEFORM_SAMPLE_MIN), WAVEFORM_SAMPLE_MAX)
            for value in chunk.samples_uv
        ]
        await self._commit(self.stream.add_samples(chunk.first_sample_index, samples))

    async def _commit_ble_reading(self, reading: BleReading) -> None:
        for measurement in reading.measurements:
            limit_code = BLE_LIMIT_CODES.get(measurement.code)
            if limit_code is not None:
                await self._check_ble_limit(limit_code, measurement.value)
        await self._append(
            lambda seq: reading.to_message(self.device_id, seq, self._clock()),
            Priority.NUMERICS,
        )

    async def _check_ble_limit(self, limit_code: str, value: float) -> None:
        conditions = self.condition_alarms
        # Where an ECG streams, its analysis checks the heart rate limits itself,
        # once an alarm raised from numerics before the ECG started has cleared.
        if (limit_code == HEART_RATE and self.stream is not None
                and not (conditions and conditions.limit_alarm_raised(HEART_RATE))):
            return
        if conditions is not None:
            await self._commit(conditions.update_numeric(limit_code, value))
        elif self.stream is not None:
            changes = self.stream.analyzer.update_numeric(limit_code, value)
            await self._commit(self.stream.changes_to_send(changes))

    async def _on_alarm_acknowledge(self, message: AlarmAcknowledge) -> None:
        conditions = self.condition_alarms
        if (conditions is not None
                and conditions.alarm_id_of(message.kind) == message.alarm_id):
            logger.info("%s: %s alarm %s acknowledged at central by %s",
                        self.device_id, message.kind, message.alarm_id,
                        message.acknowledged_by)
            await self._commit(conditions.acknowledge(message.kind))
            return
        stream = self.stream
        current = stream.alarm_id_of(message.kind) if stream is not None else None
        if stream is None or current != message.alarm_id:
            # A late acknowledgement of an earlier episode must not silence a new
            # alarm of the same kind, so only the current raise is acknowledged.
            logger.info(
                "%s: ignoring acknowledgement of %s alarm %s by %s: it is not the "
                "current alarm (current: %s)", self.device_id, message.kind,
                message.alarm_id, message.acknowledged_by, current,
            )
            return
        logger.info("%s: %s alarm %s acknowledged at central by %s at %s",
                    self.device_id, message.kind, message.alarm_id,
                    message.acknowledged_by, message.acknowledged_at.isoformat())
        changes = stream.analyzer.acknowledge(message.kind)
        await self._commit(stream.changes_to_send(changes))

    async def _commit(self, out: Outgoing) -> None:
        # Alarms are committed before they are announced in the log, so an alarm a
        # nurse might hear about is never one the buffer could lose.
        for change, build in out.alarms:
            message = await self._append(build, Priority.ALARM)
            if message is not None:
                await self.buffer.record_alarm(
                    message.alarm_id, change.kind, change.priority, change.state,
                    message.started_at.isoformat(), change.evidence,
                )
            log = logger.warning if change.state == "raised" else logger.info
            log("ALARM %s %s %s priority %s on %s: %s", change.state, change.category,
                change.kind, change.priority, self.device_id, change.evidence)
        for build_numerics in out.numerics:
            await self._append(build_numerics, Priority.NUMERICS)
        for build_waveform in out.waveforms:
            await self._append(build_waveform, Priority.WAVEFORM)

    async def _append(
        self, build: Callable[[int], DeviceMessage], priority: Priority
    ) -> DeviceMessage | None:
        try:
            message = await self.buffer.append(build, priority)
        except (sqlite3.Error, OSError) as exc:
            # The message is lost. The technical alarm warns staff, and a gap report
            # follows once the buffer can be written again.
            self.unbuffered_total += 1
            if self.unbuffered_total % 100 == 1:
                logger.error("%s: could not buffer a message (%d lost so far): %s",
                             self.device_id, self.unbuffered_total, exc)
            if len(self._unbuffered) < UNBUFFERED_LIMIT:
                self._unbuffered.append(encode(build(0)))
            if self.supervisor is not None:
                self.supervisor.buffer_failed(str(exc))
            return None
        if self._unbuffered:
            await self._report_unbuffered()
        if self.supervisor is not None:
            self.supervisor.buffer_recovered()
            if self.buffer.dropped_messages > self._dropped_reported:
                self._dropped_reported = self.buffer.dropped_messages
                self.supervisor.buffer_full(
                    f"the local buffer is full: discarded the {self.buffer.dropped_messages}"
                    f" oldest messages ({self.buffer.dropped_samples} ECG samples);"
                    " central records the gap"
                )
        return message

    async def _report_unbuffered(self) -> None:
        lost, self._unbuffered = self._unbuffered, []
        logger.warning("%s: buffer writable again; reporting %d lost messages as gaps",
                       self.device_id, len(lost))
        for build_gap in describe_dropped(lost, BUFFER_WRITE_FAILED):
            try:
                await self.buffer.append(build_gap, Priority.ALARM)
            except (sqlite3.Error, OSError) as exc:
                logger.error("%s: could not buffer a gap report: %s", self.device_id, exc)

    async def _commit_board_numerics(self, payload: NumericsPayload) -> None:
        measurements = []
        for name, sign in NumericsPayload.VITAL_SIGNS.items():
            value = getattr(payload, name)
            if value is None:
                continue
            spec = sign.value
            measurements.append(
                Measurement(code=spec.mdc_reference_id, value=value, unit=spec.unit)
            )
            limit_code = LIMIT_CODES.get(name)
            if limit_code is not None and self.stream is not None:
                changes = self.stream.analyzer.update_numeric(limit_code, value)
                await self._commit(self.stream.changes_to_send(changes))
        if not measurements:
            return
        measured_at = self._clock()
        await self._append(
            lambda seq: VitalsNumerics(
                device_id=self.device_id, seq=seq, sent_at=self._clock(),
                measured_at=measured_at, measurements=measurements,
            ),
            Priority.NUMERICS,
        )
