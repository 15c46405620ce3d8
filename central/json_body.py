"""Strict decoding of small JSON request bodies into msgspec structs."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from starlette.requests import Request

from central.api import ApiError

MAX_BODY_BYTES = 16 * 1024
Body = TypeVar("Body")


async def decode_body(
    request: Request,
    body_type: type[Body],
    example: str | None = None,
    *,
    description: str = "request body",
    max_bytes: int = MAX_BODY_BYTES,
) -> Body:
    """Decode the body as ``body_type``, or raise a 400 ApiError naming what is wrong.

    ``example``, when given, is a valid body shown in the error so the caller can fix
    theirs; ``description`` names the body in messages ("chat envelope").
    """
    body = await request.body()
    if len(body) > max_bytes:
        raise ApiError(413, f"{description} is larger than {max_bytes} bytes")
    hint = f"; example: {example}" if example is not None else ""
    try:
        decoded = msgspec.json.decode(body, type=body_type)
    except msgspec.ValidationError as exc:
        raise ApiError(400, f"invalid {description}: {exc}{hint}") from None
    except msgspec.DecodeError:
        shape = f"JSON such as {example}" if example is not None else "a JSON object"
        raise ApiError(400, f"{description} must be {shape}") from None
    # PostgreSQL text cannot store U+0000, so such a string would fail the query.
    field = _field_with_nul(msgspec.to_builtins(decoded), "$")
    if field is not None:
        raise ApiError(400, f"invalid {description}: {field} must not contain U+0000")
    return decoded


def _field_with_nul(value: Any, path: str) -> str | None:
    """Return the path of the first string in ``value`` that contains U+0000."""
    if isinstance(value, str):
        return path if "\x00" in value else None
    if isinstance(value, dict):
        children = [(f"{path}.{key}", item) for key, item in value.items()]
    elif isinstance(value, list):
        children = [(f"{path}[{index}]", item) for index, item in enumerate(value)]
    else:
        return None
    for child_path, item in children:
        found = _field_with_nul(item, child_path)
        if found is not None:
            return found
    return None
