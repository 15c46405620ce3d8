"""The agent's TOML configuration, validated once at start-up."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

from edge_agent.alarms.limits import DEFAULT_LIMITS, NumericLimit
from edge_agent.dsp.settings import AnalyzerSettings
from protocol.messages import validation_problem

Identifier = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0.0, le=3600.0)]


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or contains an invalid value."""


class DeviceSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    id: Identifier
    secret: str | None = None
    secret_file: str | None = None
    model: str = "AURA bedside agent"
    bed: Identifier | None = None


class SerialSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    port: str
    baudrate: Annotated[int, msgspec.Meta(ge=1200, le=4_000_000)] = 115_200
    reopen_delay_s: PositiveSeconds = 2.0


# Services a sensor bound by name must advertise, as named in the config; polar_pmd is
# the Polar Measurement Data service that carries the H10's ECG.
BleServiceName = Literal[
    "heart_rate", "pulse_oximeter", "blood_pressure", "health_thermometer", "polar_pmd"
]
BleAddress = Annotated[
    str, msgspec.Meta(pattern=r"^([0-9A-Fa-f]{2}:){5}[0-9A-Fa-f]{2}$")
]


class BleSensorSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """One Bluetooth LE sensor of this bed: by address, or by name and service."""

    address: BleAddress | None = None
    name: Annotated[str, msgspec.Meta(min_length=1, max_length=248)] | None = None
    service: BleServiceName | None = None
    # Cuffs and thermometers that connect only to send a reading set this to false,
    # because their idle link is no fault.
    disconnect_alarm: bool = True
    # A link that stays up this long without a notification is replaced; unset for
    # sensors that notify only when a reading is taken.
    silence_timeout_s: PositiveSeconds | None = None

    def label(self) -> str:
        """Return how logs and alarm evidence name the sensor."""
        if self.address is not None:
            return self.address
        return f"{self.name!r} ({self.service})"


class BleSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # A bumble transport such as "usb:0" drives that controller through bumble,
    # without BlueZ. Unset: bleak's platform backend (BlueZ on Linux).
    transport: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    sensors: list[BleSensorSettings] = []
    scan_timeout_s: PositiveSeconds = 10.0
    reconnect_min_delay_s: PositiveSeconds = 0.5
    reconnect_max_delay_s: PositiveSeconds = 30.0
    # The sensor_disconnected alarm is raised once a sensor has been without a link
    # this long, so a brief dropout while a patient turns over does not alarm.
    disconnect_grace_s: Annotated[float, msgspec.Meta(ge=0.0, le=600.0)] = 10.0
    # The sensor_battery_low alarm is raised at or below this charge. 15 % is an
    # estimate of what leaves staff time to charge or swap a sensor.
    battery_low_percent: Annotated[int, msgspec.Meta(ge=1, le=50)] = 15
WebSocketUrl = Annotated[str, msgspec.Meta(pattern=r"^wss?://")]


class CentralSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: WebSocketUrl
    # Other central instances (or load balancers) to try, in order, when the current
    # one cannot be reached or drops the connection. Central stores by (device,
    # sequence), so moving to another instance loses and duplicates nothing.
    fallback_urls: Annotated[list[WebSocketUrl], msgspec.Meta(max_length=16)] = []
    connect_timeout_s: PositiveSeconds = 10.0
    reconnect_min_delay_s: PositiveSeconds = 0.5
    reconnect_max_delay_s: PositiveSeconds = 30.0
    max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 512
    # A connection that replies to no ping within ping_interval_s + ping_timeout_s is
    # dead (a black-holed route, a vanished access point) and is replaced.
    ping_interval_s: PositiveSeconds = 10.0
    ping_timeout_s: PositiveSeconds = 10.0
    # Messages sent but unacknowledged this long mean the connection is dead even if
    # the socket looks open; it is replaced and everything unacknowledged resent.
    ack_timeout_s: PositiveSeconds = 15.0


class BufferSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: str = "/var/lib/aura-edge/buffer.sqlite3"
    # Unsent messages beyond this are discarded, oldest waveforms first, and reported
    # to central as gaps. 256 MB stores about two days of one ECG lead at 360 Hz.
    max_size_mb: Annotated[float, msgspec.Meta(ge=1.0, le=100_000.0)] = 256.0


class DspSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mains_hz: Literal[50, 60] = 50
    # The sampling rate the sensor is expected to report. When set, the filters are
    # designed for it at load time, and a sensor reporting another rate raises a
    # technical alarm.
    sample_rate_hz: Annotated[float, msgspec.Meta(ge=125.0, le=1000.0)] | None = None
    # Compare the rate at which samples arrive with the rate the sensor reports.
    # Turn off only for replays faster than real time.
    check_sample_rate: bool = True
    waveform_chunk_s: Annotated[float, msgspec.Meta(ge=0.05, le=2.0)] = 0.25
    numerics_interval_s: Annotated[float, msgspec.Meta(ge=0.25, le=60.0)] = 1.0


class LimitSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """Per-patient alarm limits of one vital sign; an omitted side is disabled."""

    low: float | None = None
    high: float | None = None
    delay_s: Annotated[float, msgspec.Meta(ge=0.0, le=120.0)] = 10.0
    hysteresis: Annotated[float, msgspec.Meta(ge=0.0)] | None = None


class AlarmSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Defaults are the PhysioNet/CinC 2015 challenge alarm definitions.
    asystole_s: Annotated[float, msgspec.Meta(ge=2.0, le=10.0)] = 4.0
    bradycardia_bpm: Annotated[float, msgspec.Meta(ge=20.0, le=60.0)] = 40.0
    bradycardia_beats: Annotated[int, msgspec.Meta(ge=2, le=20)] = 5
    tachycardia_bpm: Annotated[float, msgspec.Meta(ge=100.0, le=250.0)] = 140.0
    tachycardia_beats: Annotated[int, msgspec.Meta(ge=2, le=40)] = 17
    ventricular_tachycardia_bpm: Annotated[float, msgspec.Meta(ge=80.0, le=200.0)] = 100.0
    ventricular_tachycardia_beats: Annotated[int, msgspec.Meta(ge=3, le=20)] = 5
    ventricular_fibrillation_s: Annotated[float, msgspec.Meta(ge=1.0, le=10.0)] = 4.0
    # High-priority alarms stay raised until acknowledged (IEC 60601-1-8 latching).
    latching: bool = True
    # Technical alarms the agent raises itself: no samples from the sensor for this
    # long, and no connection to central for this long.
    sensor_silent_s: Annotated[float, msgspec.Meta(ge=1.0, le=300.0)] = 5.0
    link_lost_s: Annotated[float, msgspec.Meta(ge=1.0, le=3600.0)] = 15.0
    # Keys: heart_rate, spo2, respiration_rate, systolic_bp, temperature. A vital sign
    # not listed keeps the adult defaults of edge_agent.alarms.limits.
    limits: dict[str, LimitSettings] = {}


def central_urls(settings: CentralSettings) -> list[str]:
    """Return the primary central URL followed by the fallbacks, without repeats."""
    return list(dict.fromkeys([settings.url, *settings.fallback_urls]))


class AgentConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    device: DeviceSettings
    serial: SerialSettings | None = None
    central: CentralSettings
    ble: BleSettings = msgspec.field(default_factory=BleSettings)
    buffer: BufferSettings = msgspec.field(default_factory=BufferSettings)
    dsp: DspSettings = msgspec.field(default_factory=DspSettings)
    alarms: AlarmSettings = msgspec.field(default_factory=AlarmSettings)

    def analyzer_settings(self) -> AnalyzerSettings:
        """Build the ECG analysis settings; raise ValueError naming a bad value."""
        alarms = self.alarms
        return AnalyzerSettings(
            mains_hz=float(self.dsp.mains_hz),
            asystole_s=alarms.asystole_s,
            bradycardia_bpm=alarms.bradycardia_bpm,
            bradycardia_beats=alarms.bradycardia_beats,
            tachycardia_bpm=alarms.tachycardia_bpm,
            tachycardia_beats=alarms.tachycardia_beats,
            ventricular_tachycardia_bpm=alarms.ventricular_tachycardia_bpm,
            ventricular_tachycardia_beats=alarms.ventricular_tachycardia_beats,
            ventricular_fibrillation_s=alarms.ventricular_fibrillation_s,
            latching=alarms.latching,
            limits=_merge_limits(alarms.limits),
        )

    def device_secret(self) -> str:
        """Return the device credential from ``secret`` or ``secret_file``."""
        if self.device.secret:
            return self.device.secret
        assert self.device.secret_file is not None  # checked in load_config
        try:
            return Path(self.device.secret_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"device.secret_file: cannot read {self.device.secret_file}: {exc}"
            ) from exc


def _merge_limits(configured: dict[str, LimitSettings]) -> tuple[NumericLimit, ...]:
    defaults = {limit.code: limit for limit in DEFAULT_LIMITS}
    unknown = sorted(set(configured) - set(defaults))
    if unknown:
        raise ValueError(
            f"alarms.limits: unknown vital sign {unknown[0]!r}; "
            f"expected one of {', '.join(sorted(defaults))}"
        )
    merged = []
    for code, default in defaults.items():
        override = configured.get(code)
        if override is None:
            merged.append(default)
            continue
        hysteresis = default.hysteresis if override.hysteresis is None else override.hysteresis
        try:
            merged.append(NumericLimit(code, override.low, override.high, default.unit,
                                       hysteresis=hysteresis, delay_s=override.delay_s))
        except ValueError as exc:
            raise ValueError(f"alarms.limits.{code}: {exc}") from exc
    return tuple(merged)


def parse_config(data: dict[str, object], source: str = "<config>") -> AgentConfig:
    """Validate a configuration already read from TOML."""
    try:
        config = msgspec.convert(data, AgentConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {validation_problem(exc, 'top level')}") from exc
    if bool(config.device.secret) == bool(config.device.secret_file):
        raise ConfigError(f"{source}: device: set exactly one of secret and secret_file")
    if config.device.secret_file:
        config.device_secret()  # an unreadable secret stops the agent at load time
    try:
        settings = config.analyzer_settings()
        if config.dsp.sample_rate_hz is not None:
            settings.check(config.dsp.sample_rate_hz)
    except ValueError as exc:
        raise ConfigError(f"{source}: {exc}") from exc
    for section in ("central", "ble"):
        backoff = getattr(config, section)
        if backoff.reconnect_min_delay_s > backoff.reconnect_max_delay_s:
            raise ConfigError(
                f"{source}: {section}.reconnect_min_delay_s must not exceed "
                f"{section}.reconnect_max_delay_s"
            )
    _check_sensors(config, source)
    return config


def _check_sensors(config: AgentConfig, source: str) -> None:
    if config.serial is None and not config.ble.sensors:
        raise ConfigError(
            f"{source}: no sensor configured; add a [serial] section or at least one "
            "[[ble.sensors]] entry"
        )
    for index, sensor in enumerate(config.ble.sensors):
        by_address = sensor.address is not None and sensor.name is None
        by_name = (
            sensor.address is None and sensor.name is not None
            and sensor.service is not None
        )
        if not (by_address or by_name):
            raise ConfigError(
                f"{source}: ble.sensors[{index}]: set either address, or both name and "
                "service"
            )


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate the agent configuration at ``path``."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text: {exc}") from exc
    return parse_config(data, str(path))
