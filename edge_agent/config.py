"""The agent's TOML configuration, validated once at start-up."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Annotated, Literal

import msgspec

Identifier = Annotated[
    str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")
]
PositiveSeconds = Annotated[float, msgspec.Meta(gt=0.0, le=3600.0)]


class ConfigError(ValueError):
    """The configuration file is missing, unreadable or holds an invalid value."""


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


class CentralSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    url: Annotated[str, msgspec.Meta(pattern=r"^wss?://")]
    connect_timeout_s: PositiveSeconds = 10.0
    reconnect_min_delay_s: PositiveSeconds = 0.5
    reconnect_max_delay_s: PositiveSeconds = 30.0
    max_in_flight: Annotated[int, msgspec.Meta(ge=1, le=10_000)] = 512


class BufferSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    path: str = "/var/lib/aura-edge/buffer.sqlite3"


class DspSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    mains_hz: Literal[50, 60] = 50
    waveform_chunk_s: Annotated[float, msgspec.Meta(ge=0.05, le=2.0)] = 0.25
    numerics_interval_s: Annotated[float, msgspec.Meta(ge=0.25, le=60.0)] = 1.0


class AlarmSettings(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    # Defaults are the PhysioNet/CinC 2015 challenge alarm definitions.
    asystole_s: Annotated[float, msgspec.Meta(ge=2.0, le=10.0)] = 4.0
    bradycardia_bpm: Annotated[float, msgspec.Meta(ge=20.0, le=60.0)] = 40.0
    bradycardia_beats: Annotated[int, msgspec.Meta(ge=2, le=20)] = 5
    tachycardia_bpm: Annotated[float, msgspec.Meta(ge=100.0, le=250.0)] = 140.0
    tachycardia_beats: Annotated[int, msgspec.Meta(ge=2, le=40)] = 17


class AgentConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    device: DeviceSettings
    serial: SerialSettings
    central: CentralSettings
    buffer: BufferSettings = msgspec.field(default_factory=BufferSettings)
    dsp: DspSettings = msgspec.field(default_factory=DspSettings)
    alarms: AlarmSettings = msgspec.field(default_factory=AlarmSettings)

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


_AT_PATH = re.compile(r" - at `\$\.?(?P<path>[^`]*)`$")


def _describe(exc: msgspec.ValidationError) -> str:
    text = str(exc)
    match = _AT_PATH.search(text)
    if match is None:
        return text
    return f"{match.group('path') or 'top level'}: {text[: match.start()]}"


def parse_config(data: dict[str, object], source: str = "<config>") -> AgentConfig:
    """Validate a configuration already read from TOML."""
    try:
        config = msgspec.convert(data, AgentConfig)
    except msgspec.ValidationError as exc:
        raise ConfigError(f"{source}: {_describe(exc)}") from exc
    if not config.device.secret and not config.device.secret_file:
        raise ConfigError(f"{source}: device: set either secret or secret_file")
    if config.central.reconnect_min_delay_s > config.central.reconnect_max_delay_s:
        raise ConfigError(
            f"{source}: central.reconnect_min_delay_s must not exceed "
            "central.reconnect_max_delay_s"
        )
    return config


def load_config(path: str | Path) -> AgentConfig:
    """Read and validate the agent configuration at ``path``."""
    try:
        with open(path, "rb") as file:
            data = tomllib.load(file)
    except OSError as exc:
        raise ConfigError(f"cannot read configuration {path}: {exc}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from exc
    return parse_config(data, str(path))
