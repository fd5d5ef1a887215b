"""A small HTTP/1.0 and 1.1 server loop for the metadata channels.

Why not uvicorn: kumo opens one unix socket per server, hundreds of them, and a
uvicorn instance per socket is heavy. The metadata protocol is tiny (GET, HEAD,
a token PUT, no bodies worth the name), so one asyncio stream handler serves every
channel. It is written to survive hostile guests: bounded request heads, deadlines
on every read (slowloris), no chunked bodies, and any parse error gets a 4xx and a
closed connection instead of an exception.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

log = logging.getLogger("kumo.metadata")

REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    411: "Length Required",
    413: "Content Too Large",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    505: "HTTP Version Not Supported",
}


@dataclass(frozen=True)
class Limits:
    """How much a client may send and how long it may take."""

    max_line: int = 8192  # request line or one header line
    max_head: int = 32768  # request line plus all headers
    max_headers: int = 100
    max_body: int = 4096  # nothing the service accepts needs more
    head_timeout: float = 10.0  # whole request head, from its first byte
    idle_timeout: float = 5.0  # between keep-alive requests
    body_timeout: float = 10.0
    write_timeout: float = 10.0
    max_requests: int = 1000  # per connection


@dataclass
class Request:
    method: str
    target: str
    version: str  # "HTTP/1.0" | "HTTP/1.1"
    headers: dict[str, str]  # lower-case names; repeated headers joined with ", "
    body: bytes = b""


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: dict[str, str] = field(default_factory=dict)


Responder = Callable[[Request], Awaitable[Response]]


class BadHttp(Exception):
    """The client broke HTTP; answer `status` and close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def error_response(status: int, message: str = "") -> Response:
    text = f"{status} {REASONS.get(status, 'Error')}\n\n{message}\n" if message else ""
    return Response(status, (text or f"{status} {REASONS.get(status, 'Error')}\n").encode())


def encode(response: Response, *, head_only: bool, keep_alive: bool) -> bytes:
    lines = [
        f"HTTP/1.1 {response.status} {REASONS.get(response.status, 'Unknown')}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Connection: " + ("keep-alive" if keep_alive else "close"),
        "Server: kumo-metadata",
    ]
    lines += [f"{name}: {value}" for name, value in response.headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


async def _read_line(reader: asyncio.StreamReader, limits: Limits) -> bytes:
    try:
        line = await reader.readuntil(b"\n")
    except asyncio.LimitOverrunError:
        raise BadHttp(431, "A request line or header is too long") from None
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise BadHttp(400, "The connection closed in the middle of a request") from None
        raise EOFError from None
    if len(line) > limits.max_line:
        raise BadHttp(431, "A request line or header is too long")
    return line


async def _read_head(reader: asyncio.StreamReader, limits: Limits) -> Request:
    """Request line and headers; EOFError when the client closed between requests."""
    line = await _read_line(reader, limits)
    while line in (b"\r\n", b"\n"):  # RFC 9112 2.2: ignore empty lines before a request
        line = await _read_line(reader, limits)
    total = len(line)
    try:
        method, target, version = line.decode("latin-1").strip().split(" ")
    except ValueError:
        raise BadHttp(400, "Malformed request line") from None
    if not version.startswith("HTTP/"):
        raise BadHttp(400, "Malformed request line")
    if version not in ("HTTP/1.0", "HTTP/1.1"):
        raise BadHttp(505, "Only HTTP/1.0 and HTTP/1.1 are served")
    if not method.isalpha() or not method.isupper():
        raise BadHttp(400, "Malformed method")
    headers: dict[str, str] = {}
    while True:
        line = await _read_line(reader, limits)
        total += len(line)
        if total > limits.max_head:
            raise BadHttp(431, "The request headers are too large")
        if line in (b"\r\n", b"\n"):
            break
        if line[:1] in (b" ", b"\t"):
            raise BadHttp(400, "Folded header lines are not accepted")
        name, sep, value = line.decode("latin-1").partition(":")
        name = name.strip().lower()
        if not sep or not name or " " in name:
            raise BadHttp(400, "Malformed header line")
        if len(headers) >= limits.max_headers and name not in headers:
            raise BadHttp(431, "Too many request headers")
        value = value.strip()
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return Request(method, target, version, headers)


async def _read_body(reader: asyncio.StreamReader, request: Request, limits: Limits) -> None:
    if "transfer-encoding" in request.headers:
        raise BadHttp(411, "Chunked request bodies are not accepted; send Content-Length")
    raw = request.headers.get("content-length")
    if raw is None:
        return
    if not raw.isdigit():
        raise BadHttp(400, "Malformed Content-Length")
    length = int(raw)
    if length > limits.max_body:
        raise BadHttp(413, "The request body is too large")
    if length:
        try:
            async with asyncio.timeout(limits.body_timeout):
                request.body = await reader.readexactly(length)
        except asyncio.IncompleteReadError:
            raise BadHttp(400, "The connection closed in the middle of a body") from None


def _wants_keep_alive(request: Request) -> bool:
    tokens = {t.strip().lower() for t in request.headers.get("connection", "").split(",")}
    if request.version == "HTTP/1.0":
        return "keep-alive" in tokens
    return "close" not in tokens


async def _send(writer: asyncio.StreamWriter, data: bytes, limits: Limits) -> None:
    writer.write(data)
    if writer.transport.get_write_buffer_size():  # only wait when the peer is slow
        async with asyncio.timeout(limits.write_timeout):
            await writer.drain()


async def serve_connection(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    respond: Responder,
    limits: Limits = Limits(),
) -> None:
    """Answer requests on one connection until the client or a limit ends it."""
    try:
        for count in range(limits.max_requests):
            timeout = limits.head_timeout if count == 0 else limits.idle_timeout
            try:
                # The deadline covers the wait for a request and its whole head.
                # asyncio.timeout, not wait_for: no extra task per request.
                async with asyncio.timeout(timeout):
                    request = await _read_head(reader, limits)
                await _read_body(reader, request, limits)
            except EOFError:
                return
            except TimeoutError:
                if count == 0:
                    await _send(writer, encode(error_response(408), head_only=False,
                                               keep_alive=False), limits)
                return
            except BadHttp as exc:
                response = error_response(exc.status, exc.message)
                await _send(writer, encode(response, head_only=False, keep_alive=False), limits)
                return
            keep_alive = _wants_keep_alive(request) and count + 1 < limits.max_requests
            try:
                response = await respond(request)
            except Exception:  # one bad request must never take the service down
                log.exception("metadata request %s %s failed", request.method, request.target)
                response, keep_alive = error_response(500), False
            data = encode(response, head_only=request.method == "HEAD", keep_alive=keep_alive)
            await _send(writer, data, limits)
            if not keep_alive:
                return
    except (ConnectionError, TimeoutError):
        return
    finally:
        writer.close()
