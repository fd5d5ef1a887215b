"""`/console`: kumo's noVNC page and the two websocket relays (VNC and serial).

- `GET /console/novnc/{server}?token=...`: the page a `console url show --novnc` URL
  opens; it does not spend the token, its websocket does.
- `WS /console/novnc/{server}/websockify?token=...`: RFB over a websocket.
- `WS /console/serial/{server}?token=...`: the serial port over a websocket.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from kumo.console.relay import SerialRelay, authorize, refuse, relay_vnc, socket_path
from kumo.errors import KumoError
from kumo.hypervisor.qemu import CONSOLE_LOG
from kumo.runtime import Runtime

# The page keeps its token out of Referer headers, caches and frames of other sites.
PAGE_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "SAMEORIGIN",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "frame-ancestors 'self'",
}


def _runtime(scope_app: Starlette) -> Runtime:
    runtime = scope_app.state.runtime
    assert isinstance(runtime, Runtime)
    return runtime


async def novnc_page(request: Request) -> Response:
    page = resources.files("kumo.console") / "novnc.html"
    return HTMLResponse(page.read_text(), headers=PAGE_HEADERS)


async def _accept(websocket: WebSocket, console_type: str, kind: str) -> Path | None:
    """Check and accept one console handshake; the guest's socket, or None if refused."""
    runtime = _runtime(websocket.app)
    server_id = websocket.path_params["server_id"]
    try:
        await authorize(websocket, runtime, console_type, server_id)
        path = socket_path(runtime, server_id, kind)
    except KumoError as exc:
        await refuse(websocket, exc.message)
        return None
    await websocket.accept(subprotocol=_offered_binary(websocket))
    return path


async def vnc_socket(websocket: WebSocket) -> None:
    path = await _accept(websocket, "novnc", "vnc")
    if path is not None:
        await relay_vnc(websocket, path)


async def serial_socket(websocket: WebSocket) -> None:
    path = await _accept(websocket, "serial", "serial")
    if path is not None:
        relay: SerialRelay = websocket.app.state.serial_relay
        await relay.relay(websocket, path, path.with_name(CONSOLE_LOG))


def _offered_binary(websocket: WebSocket) -> str | None:
    """websockify's `binary` subprotocol when the client offers it (older clients)."""
    return "binary" if "binary" in (websocket.scope.get("subprotocols") or []) else None


def build_app(runtime: Runtime) -> Starlette:
    app = Starlette(routes=[
        Route("/novnc/{server_id}", novnc_page),
        WebSocketRoute("/novnc/{server_id}/websockify", vnc_socket),
        WebSocketRoute("/serial/{server_id}", serial_socket),
    ])
    app.state.runtime = runtime
    app.state.serial_relay = SerialRelay()
    return app
