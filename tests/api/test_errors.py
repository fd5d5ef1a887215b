"""A bug in a handler: one logged traceback, a 500 in the API's shape, the connection kept."""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from kumo.api.errors import Flavor
from kumo.api.parts import part_app
from kumo.runtime import Runtime


async def broken(_request: Request) -> Response:
    raise RuntimeError("a bug")


async def fine(_request: Request) -> Response:
    return PlainTextResponse("fine")


@pytest.fixture
def served(runtime: Runtime) -> Iterator[int]:
    """A compute-shaped part app with a broken route, served by uvicorn on a free port."""
    app = part_app(runtime, [Route("/broken", broken), Route("/fine", fine)], Flavor.COMPUTE)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, http="httptools", log_level="warning",
                                           lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])))
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def ask(conn: socket.socket, path: str) -> bytes:
    conn.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        data += conn.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += conn.recv(65536)
    return head + b"\r\n\r\n" + body


def test_500_keeps_the_connection(served: int, caplog: pytest.LogCaptureFixture,
                                  tmp_path: Path) -> None:
    caplog.set_level(logging.INFO)
    with socket.create_connection(("127.0.0.1", served)) as conn:
        first = ask(conn, "/broken")
        assert first.startswith(b"HTTP/1.1 500")
        assert first.endswith(b'{"computeFault":{"code":500,'
                              b'"message":"kumo hit an unexpected error; see its log"}}')
        # The same connection serves the next request (a keep-alive client sees no reset).
        assert ask(conn, "/fine").startswith(b"HTTP/1.1 200")
    tracebacks = [r for r in caplog.records if r.exc_info]
    assert len(tracebacks) == 1 and "GET /broken" in tracebacks[0].getMessage()
    assert not any("Exception in ASGI application" in r.getMessage() for r in caplog.records)


def test_every_api_prefix_has_an_error_shape() -> None:
    from kumo.api.app import PREFIXES, flavor_of
    from kumo.api.errors import Flavor

    for service, prefix in PREFIXES.items():
        assert isinstance(flavor_of({"path": prefix + "/x"}), Flavor), service
    assert flavor_of({"path": "/volume/v3/volumes"}) is Flavor.COMPUTE  # Cinder's is nova's
