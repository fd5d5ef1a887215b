"""Nova's console API: `POST /servers/{id}/remote-consoles` (2.6+) and the older
`os-getVNCConsole` / `os-getSerialConsole` actions (2.1-2.5).

Each call issues one single-use token and answers with the URL that spends it:
- novnc: `{base}/console/novnc/{server}?token=...`, kumo's noVNC page, whose
  websocket is relayed to QEMU's VNC unix socket;
- serial: `ws(s)://{host}/console/serial/{server}?token=...`, a websocket relayed
  to the guest's first serial port (what nova's serial proxy hands out).

Any API process issues them for a server on any host whose agent is up; the
websocket is relayed to that host's agent (`remote.py`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kumo.agent.dispatch import dispatch_of
from kumo.api.context import RequestContext
from kumo.api.parts import in_session, runtime_from
from kumo.compute import servers
from kumo.compute.microversion import version_of
from kumo.compute.models import ACTIVE, RUNNING
from kumo.compute.service import compute_of
from kumo.console import tokens
from kumo.console.remote import check_host_up, local_hypervisor
from kumo.errors import BadRequest, Conflict, NotFound
from kumo.runtime import Runtime

# nova's schema: protocol -> the console types it carries
PROTOCOL_TYPES = {"vnc": ("novnc", "xvpvnc"), "spice": ("spice-html5", "spice-direct"),
                  "rdp": ("rdp-html5",), "serial": ("serial",), "mks": ("webmks",)}
# The legacy actions and the types each accepts.
ACTIONS = {"os-getVNCConsole": "vnc", "os-getSPICEConsole": "spice",
           "os-getRDPConsole": "rdp", "os-getSerialConsole": "serial"}
# What kumo serves: console type -> the socket the relay joins.
SOCKET_OF = {"novnc": "vnc", "serial": "serial"}


def console_url(runtime: Runtime, console_type: str, server_id: str, token: str) -> str:
    base = runtime.settings.base_url
    if console_type == "serial":
        scheme, rest = base.split("://", 1)
        return f"{'wss' if scheme == 'https' else 'ws'}://{rest}/console/serial/{server_id}" \
               f"?token={token}"
    return f"{base}/console/novnc/{server_id}?token={token}"


def _check_type(protocol: Any, console_type: Any) -> str:
    if not isinstance(protocol, str) or protocol not in PROTOCOL_TYPES:
        raise BadRequest("Invalid input for field/attribute protocol. Value: "
                         f"{protocol}. It must be one of {', '.join(PROTOCOL_TYPES)}")
    if not isinstance(console_type, str) or console_type not in PROTOCOL_TYPES[protocol]:
        raise BadRequest(f"Invalid input for field/attribute type. Value: {console_type}. "
                         f"For protocol {protocol} it must be one of "
                         f"{', '.join(PROTOCOL_TYPES[protocol])}")
    if console_type not in SOCKET_OF:
        raise BadRequest(f"Unavailable console type {console_type}: kumo serves novnc and "
                         "serial consoles")
    return console_type


async def _issue(request: Request, server_id: str, console_type: str) -> str:
    """Check the server can show the console now; a token for it (its URL)."""
    runtime = runtime_from(request)
    scaled = dispatch_of(runtime) is not None  # hosts with agents (PostgreSQL)
    here = None if scaled else compute_of(runtime).host

    def work(session: Session, context: RequestContext) -> str:
        context.require_writer()
        server = servers.get_server(session, context, server_id)
        if server.vm_state != ACTIVE or server.power_state != RUNNING:
            raise Conflict(f"Instance {server.id} is not ready (it is {server.vm_state}); "
                           "consoles are open while it runs")
        hypervisor = local_hypervisor(runtime, server.host)
        if hypervisor is not None:
            if not hypervisor.console_socket(server.id, SOCKET_OF[console_type]).exists():
                raise Conflict(f"Instance {server.id} was started without a {console_type} "
                               "console (before kumo had consoles); stop and start it to "
                               "get one")
        elif scaled:
            check_host_up(session, runtime, server.id, server.host)
        else:
            raise Conflict(f"Instance {server.id} runs on host {server.host}; this kumo "
                           f"({here}) relays consoles of its own host's servers only. Use "
                           "`openstack console log show` there, or the kumo on that host")
        return tokens.issue(session, console_type=console_type, server_id=server.id,
                            project_id=server.project_id, user_id=context.user_id,
                            ttl=runtime.settings.console.token_ttl)

    token = await in_session(request, work)
    return console_url(runtime, console_type, server_id, token)


async def create_remote_console(request: Request) -> Response:
    """POST /servers/{id}/remote-consoles."""
    from kumo.api.http import read_json

    if version_of(request) < (2, 6):
        raise NotFound("The resource could not be found.")
    body = await read_json(request)
    spec = body.get("remote_console") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise BadRequest("Invalid input: 'remote_console' is a required property")
    protocol, console_type = spec.get("protocol"), spec.get("type")
    url = await _issue(request, request.path_params["id"], _check_type(protocol, console_type))
    return JSONResponse({"remote_console": {"protocol": protocol, "type": console_type,
                                            "url": url}})


async def console_action(request: Request, server_id: str, name: str, args: Any) -> Response:
    """os-getVNCConsole, os-getSerialConsole (and the SPICE/RDP ones kumo refuses)."""
    if version_of(request) >= (2, 6):
        raise NotFound(f"{name} was replaced by POST /servers/{{id}}/remote-consoles in "
                       "microversion 2.6")
    console_type = args.get("type") if isinstance(args, dict) else None
    url = await _issue(request, server_id, _check_type(ACTIONS[name], console_type))
    return JSONResponse({"console": {"type": console_type, "url": url}})
