"""The metadata service: one unix socket per server, one event loop for them all.

Each server's QEMU forwards 169.254.169.254:80 through `socat - UNIX-CONNECT:<sock>`
(guestfwd). The socket a request arrives on is the only thing that says which
server asks: headers such as X-Instance-ID or X-Forwarded-For, the Host, the
address or the path a guest sends are never consulted for identity.

`open_channel` / `close_channel` are called by compute and the hypervisor from
worker threads: the socket is bound synchronously (so its path exists when the
call returns and QEMU may start at once) and handed to the event loop with
`call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from urllib.parse import unquote, urlsplit

from kumo.config import MetadataSettings, Settings
from kumo.errors import BadRequest, NotFound
from kumo.metadata import imds
from kumo.metadata.http import Limits, Request, Response, error_response, serve_connection
from kumo.metadata.instance import InstanceSource, InstanceView
from kumo.metadata.networks import NetworkListeners
from kumo.metadata.trees import Defaults, Document, lookup, normalize

log = logging.getLogger("kumo.metadata")

_SERVER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_SUN_PATH_MAX = 107  # sockaddr_un.sun_path minus the terminating NUL
_MAX_CONNECTIONS_PER_CHANNEL = 64  # one guest cannot starve the others
_CACHE_PRUNE_AT = 4096  # entries; expired ones are dropped when the cache reaches it


@dataclass
class _Channel:
    server_id: str
    path: Path
    sock: socket.socket
    server: asyncio.AbstractServer | None = None
    starting: bool = False
    closed: bool = False
    writers: set[asyncio.StreamWriter] = field(default_factory=set)


@dataclass
class _Entry:
    """A server's view and the documents rendered from it, kept for a few seconds."""

    expires: float
    view: InstanceView | None
    documents: dict[str, Document] = field(default_factory=dict)


def channel_dir(run_dir: Path) -> Path:
    """Where the sockets go: RUN/metadata, or a short folder under /tmp when that path
    would not fit in a unix socket address (108 bytes, deep test folders)."""
    preferred = Path(run_dir) / "metadata"
    if len(str(preferred)) + len("/") + 36 + len(".sock") <= _SUN_PATH_MAX:
        return preferred
    digest = hashlib.sha256(str(Path(run_dir).resolve()).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"kumo-md-{digest}"


class MetadataService:
    """Serves the EC2 and OpenStack metadata trees, one unix socket per server."""

    def __init__(
        self,
        source: InstanceSource,
        run_dir: Path,
        settings: Settings | MetadataSettings | None = None,
        *,
        adopt: Iterable[str] | Callable[[], Iterable[str]] = (),
        cache_seconds: float = 5.0,
        limits: Limits = Limits(),
        token_secret: bytes | None = None,
    ) -> None:
        if isinstance(settings, Settings):
            settings = settings.metadata
        settings = settings or MetadataSettings()
        self.source = source
        self.directory = channel_dir(run_dir)
        self.defaults = Defaults(dns_nameservers=tuple(settings.dns_nameservers))
        self.cache_seconds = cache_seconds
        self.limits = limits
        # The IMDSv2 key: from the database in kumo (shared by every process, kept
        # across restarts); a random one when none is given (tests, benchmarks).
        self.tokens = imds.TokenIssuer(token_secret)
        self._adopt = adopt
        self._lock = threading.Lock()
        self._channels: dict[str, _Channel] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._cache: dict[str, _Entry] = {}
        self._pending: dict[str, asyncio.Future[InstanceView | None]] = {}
        # Real networks: one listener per network inside kumo's namespace.
        self.networks = NetworkListeners(self.respond, limits)

    # -- lifecycle ---------------------------------------------------------

    async def start(self) -> None:
        """Serve every channel opened so far and re-open those of adopted servers."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(self.directory, 0o700)  # only kumo (and the QEMUs it runs) may connect
        loop = asyncio.get_running_loop()
        with self._lock:
            self._loop = loop
            waiting = list(self._channels.values())
        for channel in waiting:
            self._serve(channel)
        adopt = self._adopt() if callable(self._adopt) else self._adopt
        for server_id in adopt:
            self.open_channel(server_id)
        await self.networks.start()

    async def stop(self) -> None:
        """Close every channel and connection; sockets files are removed."""
        with self._lock:
            channels = list(self._channels.values())
            self._channels.clear()
            self._loop = None
        for channel in channels:
            channel.closed = True
            self._unlink(channel.path)
            self._shutdown(channel)
        self._cache.clear()
        await self.networks.stop()

    # -- channels (callable from any thread) -------------------------------

    def open_channel(self, server_id: str) -> Path:
        """Listen on the server's socket (idempotent); returns its path for QEMU."""
        if not _SERVER_ID.match(server_id):
            raise BadRequest(f"not a server id: {server_id!r}")
        with self._lock:
            channel = self._channels.get(server_id)
            if channel is not None:
                return channel.path
            path = self.directory / f"{server_id}.sock"
            sock = self._bind(path)
            channel = _Channel(server_id, path, sock)
            self._channels[server_id] = channel
            loop = self._loop
        if loop is not None:
            self._call_in_loop(loop, self._serve, channel)
        return path

    def close_channel(self, server_id: str) -> None:
        """Stop listening for the server and drop what was cached (idempotent)."""
        with self._lock:
            channel = self._channels.pop(server_id, None)
            loop = self._loop
        if channel is None:
            return
        channel.closed = True
        self._unlink(channel.path)
        if loop is None or not self._call_in_loop(loop, self._shutdown, channel):
            channel.sock.close()
        if loop is not None:
            self._call_in_loop(loop, self._cache.pop, server_id, None)

    def open_network(self, network_id: str, sock: socket.socket,
                     resolve: Callable[[str], str | None]) -> None:
        """Answer guests on a real network (any thread); see `kumo.metadata.networks`."""
        self.networks.open_network(network_id, sock, resolve)

    def close_network(self, network_id: str) -> None:
        self.networks.close_network(network_id)

    def invalidate(self, server_id: str) -> None:
        """Forget the cached view, e.g. after `server set --property` (any thread)."""
        with self._lock:
            loop = self._loop
        if loop is not None:
            self._call_in_loop(loop, self._cache.pop, server_id, None)

    def channel_path(self, server_id: str) -> Path | None:
        """The socket of an open channel, or None."""
        with self._lock:
            channel = self._channels.get(server_id)
        return channel.path if channel else None

    # -- internals ---------------------------------------------------------

    def _bind(self, path: Path) -> socket.socket:
        if len(str(path)) > _SUN_PATH_MAX:
            raise BadRequest(f"metadata socket path too long for a unix socket: {path}")
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._unlink(path)  # left over from a previous run
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(str(path))
            os.chmod(path, 0o600)
            sock.listen(256)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    @staticmethod
    def _unlink(path: Path) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()

    @staticmethod
    def _call_in_loop(loop: asyncio.AbstractEventLoop, func: Callable[..., object],
                      *args: object) -> bool:
        try:
            loop.call_soon_threadsafe(func, *args)
        except RuntimeError:  # the loop is closed: kumo is shutting down
            return False
        return True

    def _serve(self, channel: _Channel) -> None:
        if channel.closed or channel.server is not None or channel.starting:
            return
        channel.starting = True
        asyncio.get_running_loop().create_task(self._start_server(channel))

    async def _start_server(self, channel: _Channel) -> None:
        handler = partial(self._connection, channel)
        try:
            server = await asyncio.start_unix_server(
                handler, sock=channel.sock, limit=self.limits.max_line
            )
        except OSError as exc:
            log.error("metadata channel of %s cannot listen: %s", channel.server_id, exc)
            return
        finally:
            channel.starting = False
        channel.server = server
        if channel.closed:  # closed while the server was starting
            self._shutdown(channel)

    def _shutdown(self, channel: _Channel) -> None:
        if channel.server is not None:
            channel.server.close()
        elif not channel.starting:
            channel.sock.close()
        for writer in list(channel.writers):
            writer.close()

    async def _connection(
        self, channel: _Channel, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        if channel.closed or len(channel.writers) >= _MAX_CONNECTIONS_PER_CHANNEL:
            writer.write(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                         b"Connection: close\r\n\r\n")
            writer.close()
            return
        channel.writers.add(writer)
        try:
            await serve_connection(
                reader, writer, partial(self.respond, channel.server_id), self.limits
            )
        finally:
            channel.writers.discard(writer)

    async def view(self, server_id: str) -> _Entry:
        """The cached entry for a server, looking it up (off the loop) when stale.

        Concurrent requests of one server share one lookup, so a boot storm costs
        one database read per server per `cache_seconds`.
        """
        now = time.monotonic()
        entry = self._cache.get(server_id)
        if entry is not None and entry.expires > now:
            return entry
        pending = self._pending.get(server_id)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.run_in_executor(None, self.source.lookup, server_id)
            self._pending[server_id] = pending
            try:
                found = await pending
            finally:
                self._pending.pop(server_id, None)
            # A vanished server is rechecked sooner than a present one.
            ttl = self.cache_seconds if found is not None else min(1.0, self.cache_seconds)
            entry = _Entry(time.monotonic() + ttl, found)
            with self._lock:
                # Guests on real networks have no channel: their entries expire instead.
                still_open = server_id in self._channels or bool(self.networks.networks())
            if still_open:
                if len(self._cache) >= _CACHE_PRUNE_AT:
                    now = time.monotonic()
                    self._cache = {k: v for k, v in self._cache.items() if v.expires > now}
                self._cache[server_id] = entry
            return entry
        found = await asyncio.shield(pending)
        return _Entry(now + self.cache_seconds, found)

    async def respond(self, server_id: str, request: Request) -> Response:
        """Answer one request of the server behind `server_id`'s channel."""
        target = request.target
        if target.startswith(("http://", "https://")):  # absolute-form, as proxies send
            target = urlsplit(target).path or "/"
        path = unquote(target.split("?", 1)[0].split("#", 1)[0])
        if not path.startswith("/"):
            return error_response(400, "The request target must be a path")
        is_token_path = "/" + "/".join(normalize(path)) == imds.TOKEN_PATH
        if request.method == "PUT":
            if not is_token_path:
                return _method_not_allowed("GET, HEAD")
            return self._issue_token(server_id, request)
        if request.method not in ("GET", "HEAD"):
            return _method_not_allowed("PUT" if is_token_path else "GET, HEAD")
        if is_token_path:
            return _method_not_allowed("PUT")
        try:
            entry = await self.view(server_id)
        except Exception:  # the database is down or busy: the guest retries
            log.exception("metadata lookup of server %s failed", server_id)
            return error_response(503, "Metadata is unavailable right now; try again")
        view = entry.view
        if view is None:
            return error_response(404, "This server no longer exists")
        token = request.headers.get(imds.TOKEN_HEADER)
        if token is not None and not self.tokens.valid(server_id, token):
            return error_response(401, "The metadata token is invalid or has expired")
        if token is None and view.http_tokens == "required":
            return error_response(
                401, "This server requires IMDSv2: PUT /latest/api/token first"
            )
        key = "/" + "/".join(normalize(path))
        document = entry.documents.get(key)
        if document is None:
            try:
                document = lookup(view, path, self.defaults)
            except NotFound:
                return error_response(404, "The resource could not be found.")
            entry.documents[key] = document
        return Response(200, document.body, document.content_type)

    def _issue_token(self, server_id: str, request: Request) -> Response:
        if "x-forwarded-for" in request.headers:
            # AWS refuses token PUTs that went through a proxy: an SSRF'd or
            # forwarded request must not get a session.
            return error_response(403, "Token requests through a proxy are refused")
        try:
            ttl = imds.parse_ttl(request.headers.get(imds.TTL_HEADER))
        except BadRequest as exc:
            return error_response(400, exc.message)
        token = self.tokens.issue(server_id, ttl)
        return Response(200, token.encode(), headers={"X-aws-ec2-metadata-token-ttl-seconds":
                                                      str(ttl)})


def _method_not_allowed(allow: str) -> Response:
    response = error_response(405, f"Allowed: {allow}")
    response.headers["Allow"] = allow
    return response
