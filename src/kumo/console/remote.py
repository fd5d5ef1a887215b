"""The consoles of guests on other hosts: relayed to their host's agent, as nova's proxy
relays to a compute node.

The process that holds the viewer's websocket (after the Origin and token checks of
`relay.authorize`) opens a websocket to the agent link of the server's host,
`/v1/servers/{id}/consoles/{vnc|serial}`, signed as every agent link request
(`kumo.agent.link`, checked by the agent before it accepts the handshake). The agent
relays it to the guest's socket with the same relays `kumo up` uses (`relay_local`:
one VNC connection per viewer, one serial hub per guest shared by every viewer, the
log tail first), so this side only passes bytes both ways.

The client is the `websockets` library (its asyncio API), which uvicorn's websocket
server already brings.
"""

from __future__ import annotations

import contextlib
import logging

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.websockets import WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from kumo.agent import registry
from kumo.agent.link import HEADER, agent_url, link_key, sign
from kumo.compute.service import ComputeService
from kumo.console.relay import first_done, pump_from_websocket
from kumo.errors import Conflict, KumoError
from kumo.hypervisor.driver import Hypervisor
from kumo.runtime import Runtime

log = logging.getLogger("kumo.console")

CONNECT_TIMEOUT = 10  # seconds to reach the agent and finish its handshake


def console_target(server_id: str, kind: str) -> str:
    """The agent link path of a guest's `vnc` or `serial` console."""
    return f"/v1/servers/{server_id}/consoles/{kind}"


def local_hypervisor(runtime: Runtime, host: str | None) -> Hypervisor | None:
    """This process's hypervisor when it runs the guests of `host`; else None.

    `kumo up` on SQLite runs every guest (its compute service is the hypervisor's);
    `kumo up` on PostgreSQL runs its own host's guests beside the APIs (agent_compute);
    an API process runs none.
    """
    from kumo.agent.dispatch import JobDispatch

    for name in ("compute", "agent_compute"):
        compute = runtime.services.get(name)
        if isinstance(compute, ComputeService) and not isinstance(compute, JobDispatch) \
                and (host is None or host == compute.host):
            return compute.hypervisor
    return None


def check_host_up(session: Session, runtime: Runtime, server_id: str,
                  host: str | None) -> None:
    """Conflict unless the agent of the server's host is registered and up."""
    if host is None:
        raise Conflict(f"Instance {server_id} is on no compute host")
    down_after = runtime.settings.agent.service_down_time
    node = registry.find(session, host)
    if node is None or not node.agent_url:
        raise Conflict(f"Instance {server_id} runs on host {host}, which has no agent link "
                       "registered: its consoles cannot be reached")
    if not registry.is_up(node, down_after=down_after):
        raise Conflict(f"Instance {server_id} runs on host {host}, which is down (no "
                       f"heartbeat for {down_after} s): its consoles open again when the "
                       "host's agent is back")


async def relay_to_agent(websocket: WebSocket, runtime: Runtime, host: str, server_id: str,
                         kind: str) -> None:
    """Relay an accepted viewer websocket to `host`'s agent, bytes both ways."""
    target = console_target(server_id, kind)
    try:
        base = await run_in_threadpool(agent_url, runtime, host)
        key = await run_in_threadpool(link_key, runtime)
        upstream = await connect("ws" + base.removeprefix("http") + target,
                                 additional_headers={HEADER: sign(key, "GET", target)},
                                 open_timeout=CONNECT_TIMEOUT, compression=None,
                                 max_size=None)
    except (KumoError, OSError, InvalidHandshake, TimeoutError) as exc:
        reason = exc.message if isinstance(exc, KumoError) else str(exc) or type(exc).__name__
        log.warning("console of server %s: host %s's agent: %s", server_id, host, reason)
        await websocket.close(code=1011, reason=f"the guest's console is not reachable: "
                                                f"{reason}"[:120])
        return

    async def to_agent(data: bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await upstream.send(data)

    try:
        await first_done(pump_from_websocket(websocket, to_agent),
                         _to_viewer(upstream, websocket))
    finally:
        await upstream.close()
        with contextlib.suppress(Exception):
            await websocket.close(*_closing(upstream))


def _closing(upstream: ClientConnection) -> tuple[int, str]:
    """How the viewer's websocket closes: as the agent closed it (its reason, such as a
    guest socket it cannot reach, reaches the viewer), 1011 if the agent went away."""
    code, reason = upstream.close_code, upstream.close_reason or ""
    if code in (1000, 1001, 1008, 1011):
        return code, reason[:120]
    return 1011, "the connection to the guest's host was lost"


async def _to_viewer(upstream: ClientConnection, websocket: WebSocket) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for message in upstream:
            await websocket.send_bytes(message if isinstance(message, bytes)
                                       else message.encode())
