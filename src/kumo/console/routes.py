"""`/console`: kumo's noVNC page and the two websocket relays (VNC and serial).

- `GET /console/novnc/{server}?token=...`: the page a `console url show --novnc` URL
  opens; it does not spend the token, its websocket does.
- `WS /console/novnc/{server}/websockify?token=...`: RFB over a websocket.
- `WS /console/serial/{server}?token=...`: the serial port over a websocket.

Either websocket is relayed here when the guest runs on this process's host, else to
the agent of its host (`remote.py`).
"""

from __future__ import annotations

from importlib import resources

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from kumo.console.relay import authorize, refuse, relay_local, serial_relay_of
from kumo.console.remote import local_hypervisor, relay_to_agent
from kumo.errors import KumoError
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


async def _relay(websocket: WebSocket, console_type: str, kind: str) -> None:
    """Check and accept one console handshake, then relay it: to the guest's socket when
    it runs on this process's host, else to its host's agent."""
    runtime = _runtime(websocket.app)
    server_id = websocket.path_params["server_id"]
    try:
        host = await authorize(websocket, runtime, console_type, server_id)
    except KumoError as exc:
        await refuse(websocket, exc.message)
        return
    await websocket.accept(subprotocol=_offered_binary(websocket))
    hypervisor = local_hypervisor(runtime, host)
    if hypervisor is not None:
        await relay_local(websocket, hypervisor, serial_relay_of(runtime), server_id, kind)
    elif host is None:
        await websocket.close(code=1011, reason="the server is on no compute host")
    else:
        await relay_to_agent(websocket, runtime, host, server_id, kind)


async def vnc_socket(websocket: WebSocket) -> None:
    await _relay(websocket, "novnc", "vnc")


async def serial_socket(websocket: WebSocket) -> None:
    await _relay(websocket, "serial", "serial")


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
    serial_relay_of(runtime)  # registered now, so that the process stops it
    return app
