"""JSON error responses and strict parsing of query parameters."""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime, timedelta

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

logger = logging.getLogger(__name__)


class ApiError(Exception):
    """A request failed with an HTTP status and a plain-language message."""

    def __init__(self, status: int, message: str, **extra: object) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


# The identifier rule of the protocol. Anything else cannot name a stored patient, and
# text such as U+0000 would make PostgreSQL fail instead of finding nothing.
_IDENTIFIER = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def patient_id_of(request: Request) -> str:
    """Return the ``patient_id`` path parameter, or raise a 404 if it is malformed."""
    patient_id: str = request.path_params["patient_id"]
    if not _IDENTIFIER.match(patient_id):
        raise ApiError(404, f"no patient with id {patient_id[:64]!r}")
    return patient_id


def alarm_id_of(request: Request) -> str:
    """Return the ``alarm_id`` path parameter, or raise a 404 if it is malformed."""
    alarm_id: str = request.path_params["alarm_id"]
    if not _IDENTIFIER.match(alarm_id):
        raise ApiError(404, f"no alarm with id {alarm_id[:64]!r}")
    return alarm_id


def error_body(status: int, message: str, **extra: object) -> dict[str, object]:
    return {"status": status, "error": message, **extra}


async def api_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else None
    body = error_body(exc.status, exc.message, **exc.extra)
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def http_error_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    return JSONResponse(
        error_body(exc.status_code, str(exc.detail)), status_code=exc.status_code
    )


async def internal_error_handler(request: Request, exc: Exception) -> Response:
    # Starlette re-raises the exception after this response, so the server logs the
    # traceback; the client only learns that the request failed.
    return JSONResponse(
        error_body(500, "internal error; the request was not completed"),
        status_code=500,
    )


def parse_time(name: str, value: str | None, default: datetime) -> datetime:
    """Parse an ISO 8601 time with an offset; raise a 400 ApiError naming ``name``."""
    if value is None:
        return default
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiError(
            400,
            f"{name}: expected an ISO 8601 time such as 2024-05-01T12:00:00Z, "
            f"got {value!r}",
        ) from None
    if parsed.tzinfo is None:
        raise ApiError(
            400, f"{name}: time {value!r} has no UTC offset; add Z or +00:00"
        )
    try:
        return parsed.astimezone(UTC)
    except OverflowError:
        # For example 0001-01-01T00:00:00+05:00, which is before year 1 in UTC.
        raise ApiError(400, f"{name}: time {value!r} is out of range") from None


def parse_int(
    name: str, value: str | None, default: int, minimum: int, maximum: int
) -> int:
    """Parse an integer within bounds; raise a 400 ApiError naming ``name``."""
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ApiError(400, f"{name}: expected an integer, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ApiError(400, f"{name}: expected {minimum} to {maximum}, got {number}")
    return number


def parse_range(request: Request, default_span: timedelta) -> tuple[datetime, datetime]:
    """Return [from, to) from ``from``/``to`` (or ``since``/``until``) parameters.

    ``to`` defaults to now and ``from`` to ``default_span`` before ``to``.
    """
    query = request.query_params
    for first, second in (("from", "since"), ("to", "until")):
        if first in query and second in query:
            raise ApiError(400, f"{first}: give either {first} or {second}, not both")
    end_name = "to" if "to" in query else "until"
    start_name = "from" if "from" in query else "since"
    end = parse_time(end_name, query.get(end_name), datetime.now(UTC))
    start = parse_time(start_name, query.get(start_name), end - default_span)
    if start >= end:
        raise ApiError(
            400,
            f"{start_name}: {start.isoformat()} must be before "
            f"{end_name} ({end.isoformat()})",
        )
    return start, end
