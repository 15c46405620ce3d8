"""Start-up configuration read once from the environment and validated whole.

Every malformed value raises ``ConfigError`` naming the variable and what it expects,
so a typo stops the service at start instead of surfacing hours later.
"""

from __future__ import annotations

import dataclasses
import difflib
import logging
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)

MIN_JWT_SECRET_BYTES = 32
ENCRYPTION_KEY_HEX_CHARS = 64
MAX_TOKEN_TTL_S = 24 * 3600
# Break-the-glass access lasts one hour unless configured, and a day at most, so an
# emergency grant cannot quietly become a standing one.
DEFAULT_BREAK_GLASS_S = 3600
MAX_BREAK_GLASS_S = 24 * 3600
MAX_ESCALATION_AFTER_S = 24 * 3600
DEFAULT_ESCALATION_AFTER_S = 120
# The patient's assigned physician is the second person to hear of an alarm the
# assigned nurse has not acknowledged.
DEFAULT_ESCALATION_ROLE = "physician"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_TRUE = frozenset({"true", "1", "yes"})
_FALSE = frozenset({"false", "0", "no"})
_ROLE_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")

# Every AURA_* variable central reads. Any other AURA_* name is taken as a typo.
# The AURA_TEST_* variables belong to the test suite and are accepted so that a shell
# prepared for tests can still start the service.
KNOWN_AURA_VARIABLES = frozenset(
    {
        "AURA_DATA_DIR",
        "AURA_HOST",
        "AURA_PORT",
        "AURA_TOKEN_TTL_S",
        "AURA_LOG_LEVEL",
        "AURA_ALLOW_AUDIT_OFF",
        "AURA_BREAK_GLASS_S",
        "AURA_TEST_DATABASE_URL",
        # The browser tests' switches, accepted for the same reason.
        "AURA_REQUIRE_BROWSER",
        "AURA_ARTIFACTS_DIR",
        "AURA_CHROMIUM",
        "AURA_TEST_REDIS_URL",
        "AURA_REDIS_CHANNEL_PREFIX",
    }
)


class ConfigError(ValueError):
    """Invalid start-up configuration; the message names the variable and the fix."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable
        self.problem = problem


@dataclass(frozen=True, repr=False)
class Settings:
    """Validated configuration of one central process."""

    database_url: str | None = None
    data_dir: Path = Path("./var/central")
    redis_url: str | None = None
    redis_channel_prefix: str = "aura:"
    jwt_secret: str = ""
    jwt_secret_generated: bool = False
    encryption_key: bytes | None = None
    ai_agents_enabled: bool = False
    audit_enabled: bool = True
    host: str = "127.0.0.1"
    port: int = 8000
    token_ttl_s: int = 900
    log_level: str = "INFO"
    break_glass_s: int = DEFAULT_BREAK_GLASS_S
    escalation_after_s: int = DEFAULT_ESCALATION_AFTER_S
    escalation_role: str = DEFAULT_ESCALATION_ROLE

    @property
    def pgdata(self) -> Path:
        """Directory of the embedded PostgreSQL cluster used when no URL is set."""
        return self.data_dir / "pgdata"

    def replace(self, **changes: object) -> Settings:
        """Return a copy with some fields changed, as for command-line overrides."""
        return dataclasses.replace(self, **changes)  # type: ignore[arg-type]

    def __repr__(self) -> str:
        fields = {
            "database_url": mask_url(self.database_url),
            "data_dir": str(self.data_dir),
            "redis_url": mask_url(self.redis_url),
            "redis_channel_prefix": self.redis_channel_prefix,
            "jwt_secret": "***",
            "encryption_key": None if self.encryption_key is None else "***",
            "ai_agents_enabled": self.ai_agents_enabled,
            "audit_enabled": self.audit_enabled,
            "host": self.host,
            "port": self.port,
            "token_ttl_s": self.token_ttl_s,
            "log_level": self.log_level,
            "break_glass_s": self.break_glass_s,
            "escalation_after_s": self.escalation_after_s,
            "escalation_role": self.escalation_role,
        }
        body = ", ".join(f"{name}={value!r}" for name, value in fields.items())
        return f"Settings({body})"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        """Build settings from environment variables; raise ConfigError on a bad one."""
        _reject_unknown_aura_variables(environ)
        jwt_secret, generated = _jwt_secret(environ.get("JWT_SECRET"))
        return cls(
            database_url=_postgres_url(environ.get("DATABASE_URL")),
            data_dir=Path(_non_empty("AURA_DATA_DIR", environ, "./var/central")),
            redis_url=_redis_url(environ.get("REDIS_URL")),
            redis_channel_prefix=_channel_prefix(
                environ.get("AURA_REDIS_CHANNEL_PREFIX")
            ),
            jwt_secret=jwt_secret,
            jwt_secret_generated=generated,
            # NOTE: the key is validated only; nothing is encrypted with it yet.
            encryption_key=_encryption_key(environ.get("ENCRYPTION_KEY")),
            ai_agents_enabled=_boolean("ENABLE_AI_AGENTS", environ, False),
            audit_enabled=_audit_enabled(environ),
            host=_non_empty("AURA_HOST", environ, "127.0.0.1"),
            port=_integer("AURA_PORT", environ, 8000, 0, 65535),
            token_ttl_s=_integer("AURA_TOKEN_TTL_S", environ, 900, 1, MAX_TOKEN_TTL_S),
            log_level=_log_level(environ.get("AURA_LOG_LEVEL")),
            break_glass_s=_integer(
                "AURA_BREAK_GLASS_S",
                environ,
                DEFAULT_BREAK_GLASS_S,
                60,
                MAX_BREAK_GLASS_S,
            ),
            escalation_after_s=_integer(
                "ESCALATION_AFTER_S",
                environ,
                DEFAULT_ESCALATION_AFTER_S,
                1,
                MAX_ESCALATION_AFTER_S,
            ),
            escalation_role=_role_name("ESCALATION_ROLE", environ),
        )


def mask_url(url: str | None) -> str | None:
    """Return ``url`` with its password, if any, replaced by ``***``."""
    if url is None:
        return None
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    netloc = f"{parts.username or ''}:***@{host}"
    return urlunsplit(parts._replace(netloc=netloc))


def _reject_unknown_aura_variables(environ: Mapping[str, str]) -> None:
    for name in sorted(environ):
        if not name.startswith("AURA_") or name in KNOWN_AURA_VARIABLES:
            continue
        close = difflib.get_close_matches(name, KNOWN_AURA_VARIABLES, n=1)
        hint = f"did you mean {close[0]}?" if close else "remove it or fix its name"
        known = ", ".join(sorted(KNOWN_AURA_VARIABLES))
        raise ConfigError(name, f"unknown variable; {hint} (known: {known})")


def _non_empty(name: str, environ: Mapping[str, str], default: str) -> str:
    value = environ.get(name)
    if value is None:
        return default
    if not value.strip():
        raise ConfigError(name, "must not be empty; unset it to use the default")
    return value.strip()


def _boolean(name: str, environ: Mapping[str, str], default: bool) -> bool:
    value = environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(name, f"expected one of true/false/1/0/yes/no, got {value!r}")


def _integer(
    name: str, environ: Mapping[str, str], default: int, minimum: int, maximum: int
) -> int:
    value = environ.get(name)
    if value is None:
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ConfigError(name, f"expected an integer, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ConfigError(
            name, f"expected an integer from {minimum} to {maximum}, got {number}"
        )
    return number


def _postgres_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    scheme = urlsplit(value.strip()).scheme
    if scheme not in ("postgres", "postgresql"):
        raise ConfigError(
            "DATABASE_URL",
            "expected a postgresql:// URL such as postgresql://user@host/dbname, "
            "or unset it to use the embedded database",
        )
    return value.strip()


def _redis_url(value: str | None) -> str | None:
    if value is None or not value.strip():
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise ConfigError(
            "REDIS_URL", "expected a redis:// or rediss:// URL with a host name"
        )
    return value.strip()


def _channel_prefix(value: str | None) -> str:
    if value is None:
        return "aura:"
    if not re.fullmatch(r"[A-Za-z0-9._:-]{1,64}", value):
        raise ConfigError(
            "AURA_REDIS_CHANNEL_PREFIX",
            f"expected 1 to 64 of A-Z a-z 0-9 . _ : -, got {value!r}",
        )
    return value


def _jwt_secret(value: str | None) -> tuple[str, bool]:
    if value is None:
        return secrets.token_urlsafe(48), True
    length = len(value.encode("utf-8"))
    if length < MIN_JWT_SECRET_BYTES:
        raise ConfigError(
            "JWT_SECRET",
            f"must be at least {MIN_JWT_SECRET_BYTES} bytes, got {length}; "
            "generate one with: "
            "python -c 'import secrets; print(secrets.token_hex(32))'",
        )
    return value, False


def _encryption_key(value: str | None) -> bytes | None:
    if value is None:
        return None
    text = value.strip()
    problem = f"expected {ENCRYPTION_KEY_HEX_CHARS} hexadecimal characters (32 bytes)"
    if len(text) != ENCRYPTION_KEY_HEX_CHARS:
        raise ConfigError("ENCRYPTION_KEY", f"{problem}, got {len(text)} characters")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise ConfigError(
            "ENCRYPTION_KEY", f"{problem}, got non-hex characters"
        ) from None


def _audit_enabled(environ: Mapping[str, str]) -> bool:
    enabled = _boolean("ENABLE_AUDIT_LOG", environ, True)
    allowed_off = _boolean("AURA_ALLOW_AUDIT_OFF", environ, False)
    if not enabled and not allowed_off:
        raise ConfigError(
            "ENABLE_AUDIT_LOG",
            "the audit log may be turned off only together with "
            "AURA_ALLOW_AUDIT_OFF=true, because reads of patient data must be "
            "traceable",
        )
    return enabled


def _role_name(name: str, environ: Mapping[str, str]) -> str:
    value = _non_empty(name, environ, DEFAULT_ESCALATION_ROLE)
    if not _ROLE_NAME.match(value):
        raise ConfigError(
            name, f"expected a role name of a-z, 0-9, _ or -, got {value!r}"
        )
    return value


def _log_level(value: str | None) -> str:
    if value is None:
        return "INFO"
    level = value.strip().upper()
    if level not in LOG_LEVELS:
        choices = ", ".join(LOG_LEVELS)
        raise ConfigError("AURA_LOG_LEVEL", f"expected one of {choices}, got {value!r}")
    return level


def log_startup_warnings(settings: Settings) -> None:
    """Log what an operator should know about this configuration at start."""
    if settings.jwt_secret_generated:
        logger.warning(
            "JWT_SECRET is not set; using a random secret, so issued tokens will not "
            "survive a restart and will not be accepted by other central processes"
        )
    if settings.ai_agents_enabled:
        logger.info(
            "ENABLE_AI_AGENTS is on: rule-based trend watchers add automated tasks "
            "to the ward list"
        )
    if not settings.audit_enabled:
        logger.warning(
            "audit log is OFF (ENABLE_AUDIT_LOG=false); reads are not traced"
        )
    if settings.redis_url is not None:
        logger.info(
            "events are relayed between instances through Redis at %s "
            "(channel prefix %r)",
            mask_url(settings.redis_url),
            settings.redis_channel_prefix,
        )
    else:
        logger.info("event fan-out is in-process; set REDIS_URL to run several instances")
