"""Small request helpers every part's handlers use."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request

from kumo.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_JSON_BODY = 1024 * 1024  # no JSON document kumo accepts comes near this


async def read_json(
    request: Request,
    *,
    content_types: tuple[str, ...] = ("application/json",),
    max_bytes: int = MAX_JSON_BODY,
) -> Any:
    """The request body parsed as JSON, or a clear 4xx saying what was wrong."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in content_types:
        expected = " or ".join(content_types)
        raise UnsupportedMediaType(
            f"Content-Type {ctype or '(none)'!r} is not supported here; send {expected}"
        )
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None


def expect_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value
