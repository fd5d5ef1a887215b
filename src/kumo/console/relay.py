"""The websocket relay: a browser's (or any client's) websocket to QEMU's unix sockets.

What nova's console proxy does, in kumo's own process: before the handshake is
accepted, the Origin is checked (`origin.py`) and the token is spent
(`tokens.spend`): it must be unexpired, unused, for this console of this server;
and the server must still exist in the token's project and have its socket. Any
refusal closes the handshake with HTTP 403 and is logged with its reason.

- VNC: each websocket gets its own connection to QEMU's VNC server (it serves
  several viewers at once), bytes relayed both ways.
- Serial: QEMU's chardev serves one client at a time, so one upstream connection
  per server is shared by every viewer (`SerialHub`); each viewer first receives the
  end of `console.log` (QEMU writes it whether or not anyone watches), then the live
  output; what any viewer types goes to the guest.

These relays run where the guest's sockets are: in `kumo up` for its own guests, and
in each host's agent behind its signed agent link; an API process relays the
consoles of other hosts' guests to their agents (`remote.py`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket, WebSocketDisconnect

from kumo.compute.models import Server
from kumo.console.origin import check_origin
from kumo.console.tokens import ConsoleGrant, spend
from kumo.db.engine import session_scope
from kumo.errors import Forbidden, KumoError
from kumo.hypervisor.driver import Hypervisor
from kumo.hypervisor.qemu import CONSOLE_LOG
from kumo.runtime import Runtime

log = logging.getLogger("kumo.console")

CHUNK = 64 * 1024
LOG_TAIL_BYTES = 64 * 1024  # what a new serial viewer sees of the past
QUEUE_LIMIT = 1024  # chunks a slow viewer may lag behind before it is dropped


async def authorize(websocket: WebSocket, runtime: Runtime, console_type: str,
                    server_id: str) -> str | None:
    """Origin, token and server checks of one handshake (Forbidden when refused); the
    host the server runs on."""
    check_origin(websocket.headers, public_url=runtime.settings.base_url,
                 allowed_origins=runtime.settings.console.allowed_origins)
    token = websocket.query_params.get("token", "")

    def work() -> str | None:
        with session_scope(runtime.sessions) as session:
            grant = spend(session, token, console_type=console_type, server_id=server_id)
            return _host_of_server(session, grant)

    return await run_in_threadpool(work)


def _host_of_server(session: Session, grant: ConsoleGrant) -> str | None:
    server = session.get(Server, grant.server_id)
    if server is None or server.project_id != grant.project_id:
        raise Forbidden("the server of this console token no longer exists")
    return server.host


async def refuse(websocket: WebSocket, reason: str) -> None:
    """Close the handshake unaccepted: the client sees HTTP 403."""
    client = websocket.client.host if websocket.client else "?"
    log.warning("console websocket %s from %s refused: %s", websocket.url.path, client, reason)
    await websocket.close(code=1008, reason=reason[:120])


async def pump_from_websocket(websocket: WebSocket,
                              write: Callable[[bytes], Awaitable[None]]) -> None:
    """Pass what the viewer sends (binary or text frames) to `write` until it hangs up."""
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        data = message.get("bytes")
        if data is None:
            data = (message.get("text") or "").encode()
        if data:
            await write(data)


async def relay_vnc(websocket: WebSocket, path: Path) -> None:
    """Relay one accepted websocket to a new connection to QEMU's VNC socket."""
    try:
        reader, writer = await asyncio.open_unix_connection(str(path))
    except OSError as exc:
        await websocket.close(code=1011, reason=f"the guest's screen is not reachable: "
                                                f"{exc.strerror}")
        return

    async def to_guest(data: bytes) -> None:
        writer.write(data)
        await writer.drain()

    async def to_viewer() -> None:
        while data := await reader.read(CHUNK):
            await websocket.send_bytes(data)

    try:
        await first_done(pump_from_websocket(websocket, to_guest), to_viewer())
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await websocket.close()


async def first_done(*jobs: Awaitable[None]) -> None:
    """Run the jobs until one ends (either side hung up); cancel the others."""
    tasks = [asyncio.ensure_future(job) for job in jobs]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            with contextlib.suppress(WebSocketDisconnect, OSError, RuntimeError):
                task.result()
    finally:
        for task in tasks:
            task.cancel()
        with contextlib.suppress(BaseException):
            await asyncio.gather(*tasks, return_exceptions=True)


def log_tail(path: Path, limit: int = LOG_TAIL_BYTES) -> bytes:
    """The end of the console log, from a line start when it was cut."""
    try:
        with path.open("rb") as handle:
            size = path.stat().st_size
            handle.seek(max(0, size - limit))
            data = handle.read(limit)
    except OSError:
        return b""
    if size > limit and b"\n" in data:
        data = data[data.index(b"\n") + 1:]
    return data


@dataclass
class SerialHub:
    """One connection to a guest's serial socket, fanned out to every viewer."""

    server_id: str
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    viewers: set[asyncio.Queue[bytes | None]] = field(default_factory=set)
    task: asyncio.Task[None] | None = None

    async def read_loop(self) -> None:
        try:
            while data := await self.reader.read(CHUNK):
                for queue in list(self.viewers):
                    if queue.qsize() >= QUEUE_LIMIT:
                        self.viewers.discard(queue)  # too slow: it is told by None
                        queue.put_nowait(None)
                    else:
                        queue.put_nowait(data)
        except OSError:
            pass
        finally:
            for queue in list(self.viewers):
                queue.put_nowait(None)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()


class SerialRelay:
    """The serial hubs of this process, by server id."""

    def __init__(self) -> None:
        self._hubs: dict[str, SerialHub] = {}
        self._lock = asyncio.Lock()

    async def _hub(self, server_id: str, path: Path) -> SerialHub:
        async with self._lock:
            hub = self._hubs.get(server_id)
            if hub is not None and hub.task is not None and not hub.task.done():
                return hub
            reader, writer = await asyncio.open_unix_connection(str(path))
            hub = SerialHub(server_id, reader, writer)
            hub.task = asyncio.create_task(hub.read_loop())
            self._hubs[server_id] = hub
            return hub

    async def _leave(self, hub: SerialHub, queue: asyncio.Queue[bytes | None]) -> None:
        async with self._lock:
            hub.viewers.discard(queue)
            if not hub.viewers and self._hubs.get(hub.server_id) is hub:
                del self._hubs[hub.server_id]
                if hub.task is not None:
                    hub.task.cancel()
                hub.writer.close()

    async def start(self) -> None:
        """Nothing to start: hubs open with their first viewer."""

    async def stop(self) -> None:
        """Close every hub's connection (the process is stopping)."""
        async with self._lock:
            hubs, self._hubs = list(self._hubs.values()), {}
        for hub in hubs:
            if hub.task is not None:
                hub.task.cancel()
            hub.writer.close()

    async def relay(self, websocket: WebSocket, server_id: str, path: Path,
                    console_log: Path) -> None:
        """Relay one accepted websocket: the log so far, then live output both ways."""
        try:
            hub = await self._hub(server_id, path)
        except OSError as exc:
            await websocket.close(code=1011, reason=f"the guest's serial port is not "
                                                    f"reachable: {exc.strerror}")
            return
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        hub.viewers.add(queue)  # before reading the log: a repeat beats a gap

        async def to_viewer() -> None:
            past = await run_in_threadpool(log_tail, console_log)
            if past:
                await websocket.send_bytes(past)
            while (data := await queue.get()) is not None:
                await websocket.send_bytes(data)

        try:
            await first_done(pump_from_websocket(websocket, hub.send), to_viewer())
        finally:
            await self._leave(hub, queue)
            with contextlib.suppress(Exception):
                await websocket.close()


def serial_relay_of(runtime: Runtime) -> SerialRelay:
    """The process's serial hubs, one set shared by its console app and its agent link
    (`kumo up` on PostgreSQL has both: two hubs of one guest would fight over its port)."""
    found = runtime.services.get("serial_consoles")
    if not isinstance(found, SerialRelay):
        found = runtime.services["serial_consoles"] = SerialRelay()
    return found


async def relay_local(websocket: WebSocket, hypervisor: Hypervisor, serial: SerialRelay,
                      server_id: str, kind: str) -> None:
    """Relay an accepted websocket to the `vnc` or `serial` socket of a guest of this host."""
    try:
        path = hypervisor.console_socket(server_id, kind)
    except KumoError as exc:
        await websocket.close(code=1011, reason=exc.message[:120])
        return
    if kind == "vnc":
        await relay_vnc(websocket, path)
    else:
        await serial.relay(websocket, server_id, path, path.with_name(CONSOLE_LOG))
