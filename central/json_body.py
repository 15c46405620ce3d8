"""Strict decoding of small JSON request bodies into msgspec structs."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
from starlette.requests import Request

from central.api import ApiError

MAX_BODY_BYTES = 16 * 1024
Body = TypeVar("Body")


async def decode_body(request: Request, body_type: type[Body], example: str) -> Body:
    """Decode the body as ``body_type``, or raise a 400 ApiError naming what is wrong.

    ``example`` is a valid body, shown in the error so the caller can fix theirs.
    """
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ApiError(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        decoded = msgspec.json.decode(body, type=body_type)
    except msgspec.ValidationError as exc:
        raise ApiError(
            400, f"invalid request body: {exc}; example: {example}"
        ) from None
    except msgspec.DecodeError:
        raise ApiError(400, f"request body must be JSON such as {example}") from None
    # PostgreSQL text cannot store U+0000, so such a string would fail the query.
    field = _field_with_nul(msgspec.to_builtins(decoded), "$")
    if field is not None:
        raise ApiError(400, f"invalid request body: {field} must not contain U+0000")
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
