"""The metadata service on real networks: 169.254.169.254:80 inside kumo's namespace.

The network driver makes one listening socket per network, bound to that network's
bridge (SO_BINDTODEVICE) inside the namespace, and hands it here with a resolver.
Which server asks is decided by the network the connection arrived on and its
source address, looked up among that network's ports; nothing the guest sends is
believed. The source address is trustworthy because anti-spoofing on every tap
drops frames whose MAC or IPv4 source is not the port's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial

from kumo.metadata.http import Limits, Request, Response, error_response, serve_connection

log = logging.getLogger("kumo.metadata")

Resolver = Callable[[str], str | None]  # source IPv4 address -> server id (blocking)
Respond = Callable[[str, Request], Awaitable[Response]]  # (server id, request) -> response
RESOLVE_SECONDS = 5.0  # a port's address changes rarely; a deleted server is re-checked soon
MAX_CONNECTIONS_PER_ADDRESS = 64


@dataclass
class _Listener:
    network_id: str
    sock: socket.socket
    resolve: Resolver
    server: asyncio.AbstractServer | None = None
    closed: bool = False
    known: dict[str, tuple[float, str | None]] = field(default_factory=dict)
    open_by_address: dict[str, int] = field(default_factory=dict)
    writers: set[asyncio.StreamWriter] = field(default_factory=set)


class NetworkListeners:
    """Listeners per network; `open_network`/`close_network` may be called from any thread."""

    def __init__(self, respond: Respond, limits: Limits) -> None:
        self.respond = respond
        self.limits = limits
        self._lock = threading.Lock()
        self._listeners: dict[str, _Listener] = {}
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._loop = loop
            waiting = list(self._listeners.values())
        for listener in waiting:
            await self._serve(listener)

    async def stop(self) -> None:
        with self._lock:
            listeners = list(self._listeners.values())
            self._listeners.clear()
            self._loop = None
        for listener in listeners:
            self._shutdown(listener)
        await asyncio.sleep(0)

    def open_network(self, network_id: str, sock: socket.socket, resolve: Resolver) -> None:
        """Serve `sock` for `network_id` (replacing an earlier listener of that network)."""
        listener = _Listener(network_id, sock, resolve)
        with self._lock:
            old = self._listeners.pop(network_id, None)
            self._listeners[network_id] = listener
            loop = self._loop
        if loop is None:
            if old is not None:
                old.sock.close()
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing: kumo is stopping
            if old is not None:
                loop.call_soon_threadsafe(self._shutdown, old)
            asyncio.run_coroutine_threadsafe(self._serve(listener), loop)

    def close_network(self, network_id: str) -> None:
        with self._lock:
            listener = self._listeners.pop(network_id, None)
            loop = self._loop
        if listener is None:
            return
        if loop is None:
            listener.sock.close()
            return
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(self._shutdown, listener)

    def networks(self) -> list[str]:
        with self._lock:
            return sorted(self._listeners)

    async def _serve(self, listener: _Listener) -> None:
        if listener.closed or listener.server is not None:
            return
        try:
            listener.server = await asyncio.start_server(
                partial(self._connection, listener), sock=listener.sock,
                limit=self.limits.max_line)
        except OSError as exc:
            log.error("metadata on network %s cannot listen: %s", listener.network_id, exc)

    def _shutdown(self, listener: _Listener) -> None:
        listener.closed = True
        if listener.server is not None:
            listener.server.close()
        else:
            listener.sock.close()
        for writer in list(listener.writers):
            writer.close()

    async def _connection(self, listener: _Listener, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        address = str(peer[0]) if peer else ""
        count = listener.open_by_address.get(address, 0)
        if listener.closed or count >= MAX_CONNECTIONS_PER_ADDRESS:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            writer.close()
            return
        listener.open_by_address[address] = count + 1
        listener.writers.add(writer)
        try:
            server_id = await self._resolve(listener, address)
            responder = (partial(self.respond, server_id) if server_id is not None
                         else _unknown(listener.network_id, address))
            await serve_connection(reader, writer, responder, self.limits)
        finally:
            listener.writers.discard(writer)
            left = listener.open_by_address.get(address, 1) - 1
            if left > 0:
                listener.open_by_address[address] = left
            else:
                listener.open_by_address.pop(address, None)

    async def _resolve(self, listener: _Listener, address: str) -> str | None:
        now = time.monotonic()
        cached = listener.known.get(address)
        if cached is not None and cached[0] > now:
            return cached[1]
        try:
            found = await asyncio.get_running_loop().run_in_executor(
                None, listener.resolve, address)
        except Exception:  # the database is busy or down: say so, keep nothing
            log.exception("metadata: looking up %s on network %s failed", address,
                          listener.network_id)
            return None
        ttl = RESOLVE_SECONDS if found is not None else 1.0
        listener.known[address] = (now + ttl, found)
        return found


def _unknown(network_id: str, address: str) -> Callable[[Request], Awaitable[Response]]:
    async def respond(_request: Request) -> Response:
        return error_response(404, f"No server has the address {address} on this network")

    del network_id
    return respond
