"""Strict decoding of small JSON request bodies into msgspec structs."""

from __future__ import annotations

from typing import TypeVar

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
        return msgspec.json.decode(body, type=body_type)
    except msgspec.ValidationError as exc:
        raise ApiError(
            400, f"invalid request body: {exc}; example: {example}"
        ) from None
    except msgspec.DecodeError:
        raise ApiError(400, f"request body must be JSON such as {example}") from None
