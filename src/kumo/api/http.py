"""Small request helpers every part's handlers use.

`read_json` is the one door for JSON bodies: whatever a client sends, a handler
sees either a document inside the bounds below or never runs (a 4xx in its API's
own error shape). The bounds are far beyond any body an OpenStack client sends.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from kumo.errors import BadRequest, PayloadTooLarge, UnsupportedMediaType

MAX_JSON_BODY = 1024 * 1024  # no JSON document kumo accepts comes near this
PARSE_ON_LOOP = 64 * 1024  # larger bodies are parsed on a worker thread
MAX_DEPTH = 32  # nesting of arrays/objects (Keystone's `extra`, image properties are shallow)
MAX_NUMBER_CHARS = 40  # a number's text: int64 and every float fit with room to spare
INT_RANGE = (-(2**63), 2**63 - 1)  # what SQLite and PostgreSQL can store as a BIGINT


class _Refused(Exception):
    """Raised from inside the parser's hooks; becomes one BadRequest."""


def _parse_int(text: str) -> int:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number of {len(text)} digits is too long")
    number = int(text)
    if not INT_RANGE[0] <= number <= INT_RANGE[1]:
        raise _Refused(f"the number {text} is out of range (64-bit integers only)")
    return number


def _parse_float(text: str) -> float:
    if len(text) > MAX_NUMBER_CHARS:
        raise _Refused(f"a number of {len(text)} characters is too long")
    number = float(text)
    if number in (float("inf"), float("-inf")):
        raise _Refused(f"the number {text} is out of range")
    return number


def _parse_constant(text: str) -> Any:
    raise _Refused(f"{text} is not a JSON value")


def _check_text(value: str) -> None:
    if "\0" in value:
        raise _Refused("strings may not contain NUL characters")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        # json accepts "\ud800" escapes; no database or client can store a lone surrogate.
        raise _Refused("a string holds a lone UTF-16 surrogate (invalid Unicode)") from None


def check_document(document: Any) -> None:
    """Walk a parsed document (without recursion): depth and every string and key."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, str):
            _check_text(value)
        elif isinstance(value, dict | list):
            if depth > MAX_DEPTH:
                raise _Refused(f"nested more than {MAX_DEPTH} levels deep")
            if isinstance(value, dict):
                for key, item in value.items():
                    _check_text(key)
                    pending.append((item, depth + 1))
            else:
                pending.extend((item, depth + 1) for item in value)


def parse_json(body: bytes) -> Any:
    """`body` as JSON within kumo's bounds; BadRequest saying what is wrong otherwise."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRequest(
            f"request body is not valid UTF-8: {exc.reason} at byte {exc.start}"
        ) from None
    try:
        document = json.loads(
            text,
            parse_int=_parse_int,
            parse_float=_parse_float,
            parse_constant=_parse_constant,
        )
        check_document(document)
    except _Refused as exc:
        raise BadRequest(f"request body is not acceptable JSON: {exc}") from None
    except RecursionError:
        raise BadRequest(
            f"request body is not acceptable JSON: nested more than {MAX_DEPTH} levels deep"
        ) from None
    except json.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    return document


async def read_json(
    request: Request,
    *,
    content_types: tuple[str, ...] = ("application/json",),
    max_bytes: int = MAX_JSON_BODY,
) -> Any:
    """The request body parsed as bounded JSON, or a clear 4xx saying what was wrong."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in content_types:
        expected = " or ".join(content_types)
        raise UnsupportedMediaType(
            f"Content-Type {ctype or '(none)'!r} is not supported here; send {expected}"
        )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > max_bytes:
            raise PayloadTooLarge(f"request body is larger than {max_bytes} bytes")
    if len(body) > PARSE_ON_LOOP:
        return await run_in_threadpool(parse_json, bytes(body))
    return parse_json(bytes(body))


def expect_object(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"{what} must be a JSON object")
    return value
