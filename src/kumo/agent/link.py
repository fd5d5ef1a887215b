"""The few calls an API process makes to one agent and waits for (nova's RPC `call`).

Jobs carry work that can wait; reading a guest's console log or fetching a server's
disk for a migration cannot. Each agent serves them over HTTP on its `[agent] listen`
address, recorded in its `compute_nodes` row. A request is signed like Neutron's
metadata proxy signs instance ids (HMAC-SHA256 with a key from the database, checked
with `compare_digest`), with a timestamp so a captured request is useless a minute
later and a nonce so that within that minute the agent accepts it only once (a
request seen on the underlay cannot be sent again). Only kumo's own processes know
the key. A refused request is logged with the caller's address.

- GET /v1/servers/{id}/console[?length=N]: the serial console, as os-getConsoleOutput
- GET /v1/servers/{id}/disk: the instance disk (qcow2 on its `_base` image), streamed
- GET /v1/servers/{id}/record: what the disk is (image id, format, base), for a migration
- WS /v1/servers/{id}/consoles/{vnc|serial}: the guest's console, relayed to its socket
  (kumo.console.remote); the handshake is signed as a GET of that path and refused
  (HTTP 403) before it is accepted when the signature is bad or stale
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from kumo.agent import registry
from kumo.db.engine import session_scope
from kumo.errors import KumoError, NotFound, ServiceUnavailable
from kumo.identity.keys import shared_key
from kumo.runtime import Runtime

log = logging.getLogger("kumo.agent")

HEADER = "x-kumo-agent-signature"
KEY_NAME = "agent_link_key"
MAX_SKEW = 60  # seconds a signed request stays good
READ_CHUNK = 1024 * 1024


def link_key(runtime: Runtime) -> bytes:
    with session_scope(runtime.sessions) as session:
        return bytes.fromhex(shared_key(session, KEY_NAME, lambda: secrets.token_hex(32)))


def _mac(key: bytes, stamp: str, nonce: str, method: str, target: str) -> str:
    message = f"{stamp}\n{nonce}\n{method}\n{target}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def sign(key: bytes, method: str, target: str, now: float | None = None) -> str:
    """`STAMP:NONCE:MAC`, good for one request within MAX_SKEW seconds of STAMP."""
    stamp, nonce = str(int(time.time() if now is None else now)), secrets.token_hex(12)
    return f"{stamp}:{nonce}:{_mac(key, stamp, nonce, method, target)}"


class Replays:
    """The signatures an agent accepted, each kept while its stamp is still good, so
    that a second use of one is refused."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: set[str] = set()
        self._expiry: deque[tuple[float, str]] = deque()

    def first_use(self, mac: str, stamp: int, now: float) -> bool:
        with self._lock:
            while self._expiry and self._expiry[0][0] < now:
                self._seen.discard(self._expiry.popleft()[1])
            if mac in self._seen:
                return False
            self._seen.add(mac)
            # Stamps may come out of order (several callers' clocks): the deque is
            # pruned from its head only, so an entry may outlive its stamp a little.
            self._expiry.append((max(stamp + MAX_SKEW, now), mac))
            return True


def verify(key: bytes, header: str | None, method: str, target: str,
           now: float | None = None, replays: Replays | None = None) -> bool:
    """The signature is good for `method target` now, and (with `replays`) unused."""
    parts = (header or "").split(":")
    if len(parts) != 3:
        return False
    stamp, nonce, mac = parts
    now = time.time() if now is None else now
    if not stamp.isdigit() or abs(now - int(stamp)) > MAX_SKEW:
        return False
    if not mac.isascii() or not hmac.compare_digest(mac, _mac(key, stamp, nonce, method,
                                                              target)):
        return False
    return replays is None or replays.first_use(mac, int(stamp), now)


# -- the API side -----------------------------------------------------------------------

def _target(path: str, query: Mapping[str, str]) -> str:
    return f"{path}?{urlencode(sorted(query.items()))}" if query else path


def agent_url(runtime: Runtime, host: str) -> str:
    with session_scope(runtime.sessions) as session:
        node = registry.find(session, host)
        if node is None or not node.agent_url:
            raise ServiceUnavailable(f"compute host {host} has no agent address registered")
        down_after = runtime.settings.agent.service_down_time
        if not registry.is_up(node, down_after=down_after):
            raise ServiceUnavailable(f"compute host {host} is down (no heartbeat for "
                                     f"{down_after} s)")
        return node.agent_url


def agent_call(runtime: Runtime, host: str, path: str,
               query: Mapping[str, str] | None = None) -> httpx.Response:
    """GET `path` from `host`'s agent; its error becomes the same KumoError here."""
    query = dict(query or {})
    target = _target(path, query)
    url = agent_url(runtime, host)
    try:
        response = httpx.get(url + target, timeout=30,
                             headers={HEADER: sign(link_key(runtime), "GET", target)})
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"compute host {host} does not answer: {exc}") from None
    if response.status_code == 404:
        raise NotFound(response.text)
    if response.status_code != 200:
        raise ServiceUnavailable(f"compute host {host} answered {response.status_code}: "
                                 f"{response.text[:200]}")
    return response


def stream_from(runtime: Runtime, host: str, path: str, dest: Path) -> int:
    """Copy what `host`'s agent serves at `path` into `dest` (temp name, renamed)."""
    target = _target(path, {})
    url = agent_url(runtime, host)
    partial = dest.with_name(dest.name + ".part")
    size = 0
    try:
        with httpx.stream("GET", url + target, timeout=60,
                          headers={HEADER: sign(link_key(runtime), "GET", target)}) as response:
            if response.status_code != 200:
                raise ServiceUnavailable(f"compute host {host} answered "
                                         f"{response.status_code} for {path}")
            with open(partial, "wb") as out:
                for chunk in response.iter_bytes(READ_CHUNK):
                    out.write(chunk)
                    size += len(chunk)
        partial.replace(dest)
    except httpx.HTTPError as exc:
        raise ServiceUnavailable(f"compute host {host} does not answer: {exc}") from None
    finally:
        partial.unlink(missing_ok=True)
    return size


# -- the agent side ---------------------------------------------------------------------

CONSOLE_KINDS = ("vnc", "serial")
ConsoleRelay = Callable[[WebSocket, str, str], Awaitable[None]]


def agent_app(key: bytes, console: Callable[[str, int | None], str],
              disk: Callable[[str], Path],
              record: Callable[[str], dict[str, Any]],
              consoles: ConsoleRelay | None = None) -> Starlette:
    """The agent's HTTP app: `console(server_id, length)`, `disk(server_id)`,
    `record(server_id)` (the disk's instance.json) and `consoles(websocket, server_id,
    kind)`, which relays an accepted websocket to the guest's `vnc` or `serial` socket."""

    replays = Replays()

    def allowed(request: HTTPConnection, method: str) -> bool:
        # Signed as the agent's own path: without the prefix it is mounted at (kumo up's
        # /agent), which Starlette keeps in the path and names in root_path.
        path, mounted = request.url.path, str(request.scope.get("root_path", ""))
        if mounted and path.startswith(mounted):
            path = path[len(mounted):]
        target = path + (f"?{request.url.query}" if request.url.query else "")
        if verify(key, request.headers.get(HEADER), method, target, replays=replays):
            return True
        caller = request.client.host if request.client else "?"
        log.warning("agent link: refused %s %s from %s: bad, stale, reused or missing "
                    "signature", method, target, caller)
        return False

    async def console_log(request: Request) -> Response:
        if not allowed(request, request.method):
            return PlainTextResponse("bad or missing signature", status_code=403)
        raw = request.query_params.get("length")
        length = int(raw) if raw and raw.lstrip("-").isdigit() else None
        try:
            text = await run_in_threadpool(console, request.path_params["id"], length)
        except KumoError as exc:
            return PlainTextResponse(exc.message, status_code=exc.status)
        return PlainTextResponse(text)

    async def server_disk(request: Request) -> Response:
        if not allowed(request, request.method):
            return PlainTextResponse("bad or missing signature", status_code=403)
        try:
            path = disk(request.path_params["id"])
            handle = open(path, "rb")  # noqa: SIM115 - closed by the generator
        except (KumoError, OSError) as exc:
            return PlainTextResponse(getattr(exc, "message", str(exc)), status_code=404)

        async def chunks() -> AsyncIterator[bytes]:
            with handle:
                while chunk := await run_in_threadpool(handle.read, READ_CHUNK):
                    yield chunk

        return StreamingResponse(chunks(), media_type="application/octet-stream",
                                 headers={"content-length": str(path.stat().st_size)})

    async def disk_record(request: Request) -> Response:
        if not allowed(request, request.method):
            return PlainTextResponse("bad or missing signature", status_code=403)
        try:
            return JSONResponse(record(request.path_params["id"]))
        except KumoError as exc:
            return PlainTextResponse(exc.message, status_code=exc.status)

    async def console_socket(websocket: WebSocket) -> None:
        # A websocket handshake is a GET: refused before it is accepted (HTTP 403).
        kind = websocket.path_params["kind"]
        if not allowed(websocket, "GET"):
            await websocket.close(code=1008, reason="bad or missing signature")
        elif consoles is None or kind not in CONSOLE_KINDS:
            await websocket.close(code=1008, reason=f"no {kind} console here")
        else:
            await websocket.accept()
            await consoles(websocket, websocket.path_params["id"], kind)

    routes: list[Any] = [Route("/v1/servers/{id}/console", console_log),
                         Route("/v1/servers/{id}/disk", server_disk),
                         Route("/v1/servers/{id}/record", disk_record),
                         WebSocketRoute("/v1/servers/{id}/consoles/{kind}", console_socket)]
    return Starlette(routes=routes)
