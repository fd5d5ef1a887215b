"""Neutron's member actions and the auto-allocated topology.

`PUT /routers/{id}/add_router_interface` and `remove_router_interface` (what `openstack
router add/remove subnet|port` call), and `GET/DELETE /auto-allocated-topology/{project}`
(`openstack network auto allocated topology create/delete`, and what nova calls for a
server with `networks: auto`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumo.api.context import RequestContext
from kumo.api.http import read_json
from kumo.api.parts import in_session, runtime_from
from kumo.network import autoalloc, nics, routers
from kumo.network.errors import NeutronNotFound


def resource_not_found() -> NeutronNotFound:
    return NeutronNotFound("The resource could not be found.", "HTTPNotFound")


async def add_interface(request: Request) -> Response:
    payload, router_id = await read_json(request), request.path_params["id"]
    info = await in_session(request, lambda s, c: routers.add_interface(s, c, router_id, payload))
    nics.notify(runtime_from(request))
    return JSONResponse(info)


async def remove_interface(request: Request) -> Response:
    payload, router_id = await read_json(request), request.path_params["id"]
    info = await in_session(request, lambda s, c: routers.remove_interface(
        s, c, router_id, payload))
    nics.notify(runtime_from(request))
    return JSONResponse(info)


def _topology_body(network_id: str, project_id: str) -> dict[str, Any]:
    return {"auto_allocated_topology": {"id": network_id, "tenant_id": project_id,
                                        "project_id": project_id}}


async def get_topology(request: Request) -> Response:
    project_id = request.path_params["project_id"]
    settings = runtime_from(request).settings.network
    dry_run = "dry-run" in request.query_params.getlist("fields")

    def work(session: Session, context: RequestContext) -> str:
        if dry_run:
            autoalloc.check_requirements(session, settings)
            return "dry-run=pass"
        context.require_writer()
        return autoalloc.ensure_topology(session, context, project_id, settings)

    network_id = await in_session(request, work)
    if not dry_run:
        nics.notify(runtime_from(request))
    return JSONResponse(_topology_body(network_id, project_id))


async def delete_topology(request: Request) -> Response:
    project_id = request.path_params["project_id"]
    await in_session(request, lambda s, c: autoalloc.delete_topology(s, c, project_id))
    nics.notify(runtime_from(request))
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    v = "/v2.0"
    return [
        Route(v + "/routers/{id}/add_router_interface", add_interface, methods=["PUT"]),
        Route(v + "/routers/{id}/remove_router_interface", remove_interface, methods=["PUT"]),
        Route(v + "/auto-allocated-topology/{project_id}", get_topology),
        Route(v + "/auto-allocated-topology/{project_id}", delete_topology,
              methods=["DELETE"]),
    ]
