import re
from pathlib import Path

import pytest

from edge_agent.config import ConfigError, load_config

VALID = """
[device]
id = "bed-1-board"
secret = "s3cret"

[serial]
port = "/dev/ttyUSB0"

[central]
url = "ws://127.0.0.1:8000/ingest"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.toml"
    path.write_text(text)
    return path


def test_valid_config_gets_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID))
    assert config.device.id == "bed-1-board"
    assert config.dsp.mains_hz == 50
    assert config.alarms.asystole_s == 4.0
    assert config.device_secret() == "s3cret"


def test_unknown_key_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="serial.*speed"):
        load_config(write(tmp_path, VALID.replace('port =', 'speed = 9600\nport =')))


def test_malformed_value_named(tmp_path: Path) -> None:
    text = VALID + "\n[dsp]\nmains_hz = 55\n"
    with pytest.raises(ConfigError, match="dsp.mains_hz"):
        load_config(write(tmp_path, text))


def test_missing_secret_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="secret"):
        load_config(write(tmp_path, VALID.replace('secret = "s3cret"', "")))


def test_secret_file_read(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("from-file\n")
    text = VALID.replace('secret = "s3cret"', f'secret_file = "{tmp_path / "secret"}"')
    assert load_config(write(tmp_path, text)).device_secret() == "from-file"


def test_invalid_toml_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[device\n"))


def test_missing_file_rejected(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "absent.toml")


def test_impossible_filter_rejected_at_load(tmp_path: Path) -> None:
    text = VALID + "\n[dsp]\nmains_hz = 60\nsample_rate_hz = 125\n"
    config = load_config(write(tmp_path, text))  # 60 Hz notch fits below 62.5 Hz
    assert config.dsp.sample_rate_hz == 125
    with pytest.raises(ConfigError, match="sample_rate_hz"):
        load_config(write(tmp_path, VALID + "\n[dsp]\nsample_rate_hz = 100\n"))


def test_patient_limits_override_defaults(tmp_path: Path) -> None:
    text = VALID + "\n[alarms.limits.heart_rate]\nlow = 40\nhigh = 150\ndelay_s = 5\n"
    settings = load_config(write(tmp_path, text)).analyzer_settings()
    heart_rate = settings.heart_rate_limit()
    assert heart_rate is not None
    assert (heart_rate.low, heart_rate.high, heart_rate.delay_s) == (40, 150, 5)
    assert any(limit.code == "spo2" for limit in settings.limits)


def test_unknown_limit_named(tmp_path: Path) -> None:
    text = VALID + "\n[alarms.limits.glucose]\nlow = 4\n"
    with pytest.raises(ConfigError, match="glucose"):
        load_config(write(tmp_path, text))


def test_inverted_limits_rejected(tmp_path: Path) -> None:
    text = VALID + "\n[alarms.limits.spo2]\nlow = 95\nhigh = 90\n"
    with pytest.raises(ConfigError, match="alarms.limits.spo2"):
        load_config(write(tmp_path, text))


def test_both_secrets_rejected(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("x")
    text = VALID.replace('secret = "s3cret"',
                         f'secret = "s3cret"\nsecret_file = "{tmp_path / "secret"}"')
    with pytest.raises(ConfigError, match="exactly one"):
        load_config(write(tmp_path, text))


def test_unreadable_secret_file_rejected_at_load(tmp_path: Path) -> None:
    text = VALID.replace('secret = "s3cret"', 'secret_file = "/nonexistent/secret"')
    with pytest.raises(ConfigError, match="secret_file"):
        load_config(write(tmp_path, text))


def test_non_utf8_file_named(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_bytes(b"\xff\xfe[device]\n")
    with pytest.raises(ConfigError, match="agent.toml"):
        load_config(path)


BLE_ONLY = """
[device]
id = "bed-2-ble"
secret = "s3cret"

[central]
url = "ws://127.0.0.1:8000/ingest"

[ble]
disconnect_grace_s = 20

[[ble.sensors]]
address = "A0:9E:1A:00:00:01"
silence_timeout_s = 10

[[ble.sensors]]
name = "Polar H10 1A2B3C4D"
service = "polar_pmd"

[[ble.sensors]]
name = "UA-651BLE"
service = "blood_pressure"
disconnect_alarm = false
"""


def test_ble_sensors_without_serial(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, BLE_ONLY))
    assert config.serial is None
    assert config.ble.transport is None
    assert config.ble.disconnect_grace_s == 20
    by_address, strap, cuff = config.ble.sensors
    assert by_address.label() == "A0:9E:1A:00:00:01"
    assert by_address.silence_timeout_s == 10
    assert strap.service == "polar_pmd"
    assert "Polar H10 1A2B3C4D" in strap.label()
    assert not cuff.disconnect_alarm


def test_no_sensor_rejected(tmp_path: Path) -> None:
    text = VALID.replace('[serial]\nport = "/dev/ttyUSB0"\n', "")
    with pytest.raises(ConfigError, match=r"no sensor configured"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("sensor", [
    'name = "Polar H10"',
    'service = "heart_rate"',
    'address = "A0:9E:1A:00:00:01"\nname = "Polar H10"\nservice = "heart_rate"',
    "disconnect_alarm = true",
])
def test_ble_sensor_binding_checked(tmp_path: Path, sensor: str) -> None:
    text = VALID + f"\n[[ble.sensors]]\n{sensor}\n"
    with pytest.raises(ConfigError, match=r"ble.sensors\[0\]: set either address"):
        load_config(write(tmp_path, text))


@pytest.mark.parametrize("sensor, field", [
    ('address = "A0:9E:1A"', "ble.sensors[0].address"),
    ('name = "x"\nservice = "glucose"', "ble.sensors[0].service"),
    ('address = "A0:9E:1A:00:00:01"\ncolour = "red"', "ble.sensors[0].colour"),
])
def test_ble_sensor_field_named(tmp_path: Path, sensor: str, field: str) -> None:
    text = VALID + f"\n[[ble.sensors]]\n{sensor}\n"
    with pytest.raises(ConfigError, match=re.escape(field)):
        load_config(write(tmp_path, text))


def test_ble_backoff_order_checked(tmp_path: Path) -> None:
    text = VALID + "\n[ble]\nreconnect_min_delay_s = 5\nreconnect_max_delay_s = 1\n"
    with pytest.raises(ConfigError, match="ble.reconnect_min_delay_s"):
        load_config(write(tmp_path, text))
