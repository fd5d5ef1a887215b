"""The small HTTP server: both protocol versions, keep-alive, and hostile clients."""

from __future__ import annotations

import asyncio
import re
import socket
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from kumo.metadata.http import Limits, Request, Response, serve_connection

FAST = Limits(head_timeout=0.3, idle_timeout=0.3, body_timeout=0.3, max_line=1024,
              max_head=4096, max_headers=20)


async def echo(request: Request) -> Response:
    return Response(200, f"{request.method} {request.target} {request.version}".encode())


async def boom(request: Request) -> Response:
    raise RuntimeError("bug in a handler")


def client(path: Path, chunks: list[bytes], pause: float) -> bytes:
    """A blocking client, as socat is: send, then read whatever comes back."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(5)
        sock.connect(str(path))
        for chunk in chunks:
            try:
                sock.sendall(chunk)
            except OSError:  # the server gave up on us: read its answer
                break
            time.sleep(pause)
        received = []
        while data := sock.recv(65536):
            received.append(data)
    return b"".join(received)


def exchange(chunks: list[bytes], respond: Callable[[Request], Awaitable[Response]] = echo,
             limits: Limits = FAST, pause: float = 0.0) -> bytes:
    """Serve one connection on a real unix socket; send `chunks`; read to EOF."""

    async def run() -> bytes:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "s.sock"
            server = await asyncio.start_unix_server(
                lambda r, w: serve_connection(r, w, respond, limits), path=str(path),
                limit=limits.max_line)
            async with server:
                loop = asyncio.get_running_loop()
                return await loop.run_in_executor(None, client, path, chunks, pause)

    return asyncio.run(run())


def statuses(data: bytes) -> list[int]:
    return [int(code) for code in re.findall(rb"HTTP/1\.1 (\d{3}) [A-Z]", data)]


def test_http_10_gets_one_answer_and_a_close() -> None:
    data = exchange([b"GET /latest HTTP/1.0\r\n\r\n"])
    assert statuses(data) == [200]
    assert b"Connection: close" in data and data.endswith(b"GET /latest HTTP/1.0")


def test_http_11_keeps_the_connection_for_several_requests() -> None:
    data = exchange([b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n"
                     b"Connection: close\r\n\r\n"])
    assert statuses(data) == [200, 200]
    assert b"GET /a HTTP/1.1" in data and data.endswith(b"GET /b HTTP/1.1")


def test_bare_lf_line_endings_are_tolerated() -> None:
    assert statuses(exchange([b"GET / HTTP/1.0\n\n"])) == [200]


def test_head_has_no_body() -> None:
    data = exchange([b"HEAD /x HTTP/1.0\r\n\r\n"])
    assert statuses(data) == [200] and b"Content-Length: 16" in data
    assert data.endswith(b"\r\n\r\n")


def test_malformed_requests_get_400() -> None:
    for bad in (b"GARBAGE\r\n\r\n", b"GET /\r\n\r\n", b"get / HTTP/1.1\r\n\r\n",
                b"GET / HTTP/1.1\r\nno colon here\r\n\r\n",
                b"GET / HTTP/1.1\r\nA: b\r\n  folded\r\n\r\n",
                b"GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
                b"\x00\xff\x16\x03\x01 binary junk\r\n\r\n"):
        assert statuses(exchange([bad])) == [400], bad


def test_unsupported_versions_and_bodies() -> None:
    assert statuses(exchange([b"GET / HTTP/2.0\r\n\r\n"])) == [505]
    assert statuses(exchange([b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"])) == [411]
    assert statuses(exchange([b"PUT / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n"])) == [413]


def test_huge_headers_get_431() -> None:
    assert statuses(exchange([b"GET / HTTP/1.1\r\nX: " + b"a" * 5000 + b"\r\n\r\n"])) == [431]
    many = b"".join(b"X-%d: 1\r\n" % i for i in range(30))
    assert statuses(exchange([b"GET / HTTP/1.1\r\n" + many + b"\r\n"])) == [431]
    total = b"".join(b"X-%d: %s\r\n" % (i, b"a" * 500) for i in range(15))
    assert statuses(exchange([b"GET / HTTP/1.1\r\n" + total + b"\r\n"])) == [431]


def test_slow_clients_are_cut_off() -> None:
    # A slowloris trickles its head; the deadline covers the whole head.
    trickle = [b"GET / HTTP/1.1\r\n"] + [b"X-A: b\r\n"] * 10
    data = exchange(trickle, pause=0.05)
    assert statuses(data) == [408]


def test_silent_client_is_closed_quietly_after_keep_alive() -> None:
    data = exchange([b"GET / HTTP/1.1\r\n\r\n"])  # keeps alive, then idles out
    assert statuses(data) == [200]


def test_handler_failure_is_a_500_not_a_crash() -> None:
    assert statuses(exchange([b"GET / HTTP/1.1\r\n\r\n"], respond=boom)) == [500]
