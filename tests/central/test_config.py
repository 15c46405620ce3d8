"""Start-up configuration: defaults, validation errors that name the variable."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from central import cli
from central.config import ConfigError, Settings, log_startup_warnings

GOOD_SECRET = "s" * 32


def test_defaults_with_empty_environment() -> None:
    settings = Settings.from_environ({})
    assert settings.database_url is None
    assert settings.data_dir == Path("./var/central")
    assert settings.pgdata == Path("./var/central/pgdata")
    assert settings.host == "127.0.0.1"
    assert settings.port == 8000
    assert settings.token_ttl_s == 900
    assert settings.audit_enabled is True
    assert settings.ai_agents_enabled is False
    assert settings.jwt_secret_generated is True
    assert len(settings.jwt_secret.encode()) >= 32


def test_all_variables_parsed() -> None:
    settings = Settings.from_environ(
        {
            "DATABASE_URL": "postgresql://aura:pw@db.example/aura",
            "AURA_DATA_DIR": "/srv/aura",
            "REDIS_URL": "redis://cache:6379/0",
            "JWT_SECRET": GOOD_SECRET,
            "ENCRYPTION_KEY": "ab" * 32,
            "ENABLE_AI_AGENTS": "yes",
            "ENABLE_AUDIT_LOG": "1",
            "AURA_HOST": "0.0.0.0",
            "AURA_PORT": "9000",
            "AURA_TOKEN_TTL_S": "60",
            "AURA_LOG_LEVEL": "debug",
        }
    )
    assert settings.database_url == "postgresql://aura:pw@db.example/aura"
    assert settings.pgdata == Path("/srv/aura/pgdata")
    assert settings.redis_url == "redis://cache:6379/0"
    assert settings.jwt_secret == GOOD_SECRET
    assert settings.jwt_secret_generated is False
    assert settings.encryption_key == bytes([0xAB]) * 32
    assert settings.ai_agents_enabled is True
    assert settings.host == "0.0.0.0"
    assert settings.port == 9000
    assert settings.token_ttl_s == 60
    assert settings.log_level == "DEBUG"


@pytest.mark.parametrize(
    ("environ", "variable", "hint"),
    [
        ({"ENABLE_AI_AGENTS": "maybe"}, "ENABLE_AI_AGENTS", "true/false/1/0/yes/no"),
        ({"ENABLE_AUDIT_LOG": "on"}, "ENABLE_AUDIT_LOG", "'on'"),
        ({"JWT_SECRET": "short"}, "JWT_SECRET", "at least 32 bytes, got 5"),
        ({"AURA_PROT": "8000"}, "AURA_PROT", "did you mean AURA_PORT?"),
        ({"AURA_SOMETHING": "x"}, "AURA_SOMETHING", "unknown variable"),
        ({"AURA_PORT": "eighty"}, "AURA_PORT", "expected an integer"),
        ({"AURA_PORT": "70000"}, "AURA_PORT", "0 to 65535"),
        ({"AURA_TOKEN_TTL_S": "0"}, "AURA_TOKEN_TTL_S", "1 to 86400"),
        ({"ENCRYPTION_KEY": "abc"}, "ENCRYPTION_KEY", "64 hexadecimal characters"),
        ({"ENCRYPTION_KEY": "zz" * 32}, "ENCRYPTION_KEY", "non-hex"),
        ({"REDIS_URL": "http://cache"}, "REDIS_URL", "redis://"),
        ({"DATABASE_URL": "mysql://db/aura"}, "DATABASE_URL", "postgresql://"),
        ({"AURA_LOG_LEVEL": "loud"}, "AURA_LOG_LEVEL", "DEBUG, INFO"),
        ({"AURA_HOST": " "}, "AURA_HOST", "must not be empty"),
        (
            {"ENABLE_AUDIT_LOG": "false"},
            "ENABLE_AUDIT_LOG",
            "AURA_ALLOW_AUDIT_OFF=true",
        ),
    ],
)
def test_invalid_value_names_variable(
    environ: dict[str, str], variable: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ(environ)
    assert caught.value.variable == variable
    assert str(caught.value).startswith(f"{variable}: ")
    assert hint in str(caught.value)


def test_audit_off_needs_explicit_allow(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_environ(
        {"ENABLE_AUDIT_LOG": "no", "AURA_ALLOW_AUDIT_OFF": "true"}
    )
    assert settings.audit_enabled is False
    with caplog.at_level(logging.WARNING, logger="central.config"):
        log_startup_warnings(settings)
    assert "audit log is OFF" in caplog.text


def test_generated_secret_warns(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings.from_environ({})
    with caplog.at_level(logging.WARNING, logger="central.config"):
        log_startup_warnings(settings)
    assert "will not survive a restart" in caplog.text


def test_repr_masks_secrets() -> None:
    settings = Settings.from_environ(
        {
            "DATABASE_URL": "postgresql://aura:hunter2@db/aura",
            "JWT_SECRET": GOOD_SECRET,
            "ENCRYPTION_KEY": "cd" * 32,
        }
    )
    text = repr(settings)
    assert GOOD_SECRET not in text
    assert "hunter2" not in text
    assert "cd" * 32 not in text
    assert "postgresql://aura:***@db/aura" in text


def test_cli_exits_2_on_bad_config(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("AURA_PORTT", "1")
    assert cli.main(["migrate"]) == 2
    error = capsys.readouterr().err
    assert "AURA_PORTT" in error
    assert "did you mean AURA_PORT?" in error


def test_escalation_settings() -> None:
    defaults = Settings.from_environ({})
    assert defaults.escalation_after_s == 120
    assert defaults.escalation_role == "physician"
    settings = Settings.from_environ(
        {"ESCALATION_AFTER_S": "30", "ESCALATION_ROLE": "charge_nurse"}
    )
    assert settings.escalation_after_s == 30
    assert settings.escalation_role == "charge_nurse"
    assert "escalation_after_s=30" in repr(settings)


@pytest.mark.parametrize(
    ("environ", "variable", "hint"),
    [
        ({"ESCALATION_AFTER_S": "0"}, "ESCALATION_AFTER_S", "1 to 86400"),
        ({"ESCALATION_AFTER_S": "2m"}, "ESCALATION_AFTER_S", "expected an integer"),
        ({"ESCALATION_ROLE": "Charge Nurse"}, "ESCALATION_ROLE", "a role name"),
    ],
)
def test_invalid_escalation_setting(
    environ: dict[str, str], variable: str, hint: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ(environ)
    assert caught.value.variable == variable
    assert hint in str(caught.value)
def test_redis_channel_prefix_parsed() -> None:
    settings = Settings.from_environ({"AURA_REDIS_CHANNEL_PREFIX": "ward-b:"})
    assert settings.redis_channel_prefix == "ward-b:"
    assert Settings.from_environ({}).redis_channel_prefix == "aura:"


@pytest.mark.parametrize("prefix", ["", "has space", "x" * 65, "tab\t"])
def test_invalid_redis_channel_prefix_named(prefix: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_environ({"AURA_REDIS_CHANNEL_PREFIX": prefix})
    assert caught.value.variable == "AURA_REDIS_CHANNEL_PREFIX"
