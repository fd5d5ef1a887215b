"""A small synchronous QMP client over a unix socket.

The hypervisor's methods block (compute runs them off the event loop), so a plain
blocking socket is simpler than `qemu.qmp`'s asyncio client. Asynchronous events
QEMU sends between replies are kept in `events` and otherwise ignored.

The socket lives in the guest's folder, whose path can be longer than the 107 bytes
a unix socket address allows; connecting through `/proc/self/fd/<dirfd>/qmp.sock`
keeps the address short whatever the folder.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from kumo.errors import KumoError


class QMPError(KumoError):
    """QEMU's monitor could not be reached or refused a command."""


def _short_address(path: Path) -> tuple[str, int | None]:
    """A connectable address for `path`, and the folder fd to close afterwards."""
    if len(os.fsencode(path)) < 100:
        return str(path), None
    dirfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{dirfd}/{path.name}", dirfd


class QMPClient:
    """One QMP session: `with QMPClient.connect(sock) as qmp: qmp.execute("query-status")`."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._buffer = b""
        self.events: list[dict[str, Any]] = []

    @classmethod
    def connect(cls, path: Path, *, timeout: float = 10.0) -> QMPClient:
        """Connect, read the greeting and leave capabilities negotiation mode."""
        deadline = time.monotonic() + timeout
        while True:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            address, dirfd = _short_address(path)
            try:
                sock.settimeout(max(0.1, deadline - time.monotonic()))
                sock.connect(address)
                break
            except OSError as exc:  # not listening yet, or QEMU gone
                sock.close()
                if time.monotonic() >= deadline:
                    raise QMPError(f"QEMU monitor {path} not reachable: {exc}") from None
                time.sleep(0.05)
            finally:
                if dirfd is not None:
                    os.close(dirfd)
        client = cls(sock)
        try:
            greeting = client._read_message()
            if "QMP" not in greeting:
                raise QMPError(f"QEMU monitor {path}: unexpected greeting {greeting!r}")
            client.execute("qmp_capabilities")
        except (OSError, EOFError, ValueError) as exc:
            client.close()
            raise QMPError(f"QEMU monitor {path} failed: {exc}") from None
        except BaseException:
            client.close()
            raise
        return client

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        """Run one command and return its `return` value; QMPError on an `error` reply."""
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        try:
            self._sock.sendall(json.dumps(message).encode() + b"\n")
            while True:
                reply = self._read_message()
                if "event" in reply:
                    self.events.append(reply)
                    continue
                if "error" in reply:
                    error = reply["error"]
                    raise QMPError(f"QEMU refused {command}: {error.get('desc', error)}")
                return reply.get("return")
        except (OSError, EOFError) as exc:
            raise QMPError(f"QEMU monitor lost during {command}: {exc}") from None

    def wait_event(self, timeout: float) -> None:
        """Read asynchronous events into `events` for up to `timeout` seconds."""
        previous = self._sock.gettimeout()
        self._sock.settimeout(max(timeout, 0.001))
        try:
            message = self._read_message()
        except TimeoutError:
            return
        except (OSError, EOFError) as exc:
            raise QMPError(f"QEMU monitor lost while waiting for events: {exc}") from None
        finally:
            self._sock.settimeout(previous)
        if "event" in message:
            self.events.append(message)

    def human(self, command_line: str) -> str:
        """A human monitor command (`info usernet`, `hostfwd_add ...`); its text output."""
        output = self.execute("human-monitor-command", {"command-line": command_line})
        return str(output or "")

    def _read_message(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            chunk = self._sock.recv(65536)
            if not chunk:
                raise EOFError("QEMU closed the monitor")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        parsed = json.loads(line)
        assert isinstance(parsed, dict)
        return parsed

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> QMPClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
