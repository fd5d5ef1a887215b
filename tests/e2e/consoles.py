"""Helpers for the console tests: a guest shell on ttyS0, websocket clients, and a
local TCP port that relays to a console websocket (for a plain VNC client library)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

from websockets.sync.client import ClientConnection, connect

T = TypeVar("T")

# User data for the tiny image: a root shell on the serial console (tiny has no
# console login), so a test can type a command and read its answer.
SERIAL_SHELL = (
    "#!/bin/sh\n"
    "setsid sh -c 'exec /bin/sh -i </dev/ttyS0 >/dev/ttyS0 2>&1' "
    "</dev/null >/dev/null 2>&1 &\n"
    "echo 'kumo tiny: a root shell waits on ttyS0' > /dev/tty1\n"
    "echo serial shell started > /dev/ttyS0\n"
)


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 180,
              every: float = 1.0) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def ws_url_of(console_url: str) -> str:
    """A `console url show` URL -> the websocket it opens (noVNC's page -> websockify)."""
    if console_url.startswith(("ws://", "wss://")):
        return console_url
    page, query = console_url.split("?", 1)
    return "ws" + page[4:] + "/websockify?" + query


def open_ws(url: str, origin: str | None = None) -> ClientConnection:
    return connect(url, origin=origin, open_timeout=30,  # type: ignore[arg-type]
                   max_size=None)


def read_until(ws: ClientConnection, needle: bytes, timeout: float = 60) -> bytes:
    """Everything received until `needle` shows up."""
    seen = b""
    deadline = time.monotonic() + timeout
    while needle not in seen:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"{needle!r} not seen; got {seen[-500:]!r}")
        with contextlib.suppress(TimeoutError):
            data = ws.recv(timeout=min(left, 5))
            seen += data if isinstance(data, bytes) else data.encode()
    return seen


@contextlib.contextmanager
def tcp_bridge(ws_url: str, origin: str | None = None) -> Iterator[int]:
    """A 127.0.0.1 port whose first connection is relayed to the websocket `ws_url`."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    stop = threading.Event()

    def serve() -> None:
        conn, _ = listener.accept()
        ws = open_ws(ws_url, origin)

        def upstream() -> None:
            with contextlib.suppress(OSError, Exception):
                while data := conn.recv(65536):
                    ws.send(data)
            stop.set()

        threading.Thread(target=upstream, daemon=True).start()
        with contextlib.suppress(Exception):
            while not stop.is_set():
                try:
                    data = ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
                conn.sendall(data if isinstance(data, bytes) else data.encode())
        ws.close()
        conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1]
    finally:
        stop.set()
        listener.close()


def private_copy(build: Callable[[], Path], dest: Path, tries: int = 3) -> Path:
    """Copy a cached image out of ~/.cache/kumo: another worktree's build of a newer
    version replaces (deletes) the cached file, so a test keeps its own copy."""
    for attempt in range(tries):
        try:
            shutil.copyfile(build(), dest)
            return dest
        except FileNotFoundError:
            if attempt == tries - 1:
                raise
    return dest
