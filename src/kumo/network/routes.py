"""Neutron v2.0 routes: discovery, then the same five calls for each resource.

Handlers are thin: parse, call the resource's service function in one transaction,
render Neutron's shape, then tell the network agent (and, for servers' ports, compute's
user-mode forwards) that the topology changed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumo.api.context import RequestContext
from kumo.api.errors import Flavor
from kumo.api.http import read_json
from kumo.api.parts import in_session, part_app, runtime_from
from kumo.network import (
    floatingips,
    l3_routes,
    networks,
    nics,
    ports,
    query,
    routers,
    secgroup_routes,
    subnets,
    views,
)
from kumo.network.errors import NeutronBadRequest
from kumo.network.models import Port
from kumo.runtime import Runtime

EXTENSIONS = (
    ("auto-allocated-topology", "Auto Allocated Topology Services",
     "Auto Allocated Topology Services."),
    ("availability_zone", "Availability Zone", "The availability zone extension."),
    ("binding", "Port Binding", "Expose port bindings of a virtual port to external "
                                "application"),
    ("dns-integration", "DNS Integration", "Provides integration with DNS."),
    ("external-net", "Neutron external network", "Adds external network attribute to "
                                                 "network resource."),
    ("ext-gw-mode", "Neutron L3 Configurable external gateway mode",
     "Extension of the router abstraction for specifying whether SNAT should occur on the "
     "external gateway"),
    ("extraroute", "Neutron Extra Route", "Extra routes configuration for L3 router"),
    ("fip-port-details", "Floating IP Port Details Extension",
     "Add port_details attribute to Floating IP resource"),
    ("net-mtu", "Network MTU", "Provides MTU attribute for a network resource."),
    ("net-mtu-writable", "Network MTU (writable)", "Provides a writable MTU attribute for a "
                                                   "network resource."),
    ("network_availability_zone", "Network Availability Zone",
     "Availability zone support for network."),
    ("port-security", "Port Security", "Provides port security"),
    ("project-id", "project_id field enabled", "Extension that indicates that project_id "
                                               "field is enabled."),
    ("provider", "Provider Network", "Expose mapping of virtual networks to physical "
                                     "networks"),
    ("router", "Neutron L3 Router", "Router abstraction for basic L3 forwarding between L2 "
                                    "Neutron networks and access to external networks via a "
                                    "NAT gateway."),
    ("router_availability_zone", "Router Availability Zone",
     "Availability zone support for router."),
    ("security-group", "security-group", "The security groups extension."),
    ("standard-attr-description", "standard-attr-description", "Extension to add "
                                                               "descriptions to standard "
                                                               "attributes"),
    ("standard-attr-revisions", "Resource revision numbers", "This extension will display "
                                                             "the revision number of neutron "
                                                             "resources."),
    ("standard-attr-timestamp", "Resource timestamps", "Adds created_at and updated_at "
                                                       "fields to all Neutron resources that "
                                                       "have Neutron standard attributes."),
    ("stateful-security-group", "Stateful security group", "Indicates if the security "
                                                           "group is stateful or not"),
    ("subnet-external-network", "Subnet External Network", "Informs if the subnet is "
                                                           "associated to a router:external "
                                                           "network"),
)


def extension_body(alias: str, name: str, description: str) -> dict[str, Any]:
    return {"alias": alias, "name": name, "description": description, "links": [],
            "updated": "2025-01-01T00:00:00-00:00"}


async def versions(request: Request) -> Response:
    href = f"{runtime_from(request).settings.base_url}/network/v2.0/"
    return JSONResponse({"versions": [{"id": "v2.0", "status": "CURRENT",
                                       "links": [{"rel": "self", "href": href}]}]})


async def root(request: Request) -> Response:
    href = f"{runtime_from(request).settings.base_url}/network/v2.0"
    collections = ("networks", "subnets", "ports", "routers", "floatingips",
                   "security-groups", "security-group-rules")
    return JSONResponse({"resources": [
        {"name": c.rstrip("s").replace("-", "_"), "collection": c,
         "links": [{"rel": "self", "href": f"{href}/{c}"}]} for c in collections]})


async def extensions(_request: Request) -> Response:
    return JSONResponse({"extensions": [extension_body(*e) for e in EXTENSIONS]})


async def extension(request: Request) -> Response:
    alias = request.path_params["alias"]
    for entry in EXTENSIONS:
        if entry[0] == alias:
            return JSONResponse({"extension": extension_body(*entry)})
    raise l3_routes.resource_not_found()


@dataclass(frozen=True)
class Resource:
    """One Neutron collection and the service functions behind it."""

    singular: str
    plural: str
    listed: Callable[[Session, RequestContext], list[Any]]
    found: Callable[[Session, RequestContext, str], Any]
    render: Callable[[Session, list[Any], RequestContext], list[dict[str, Any]]]
    create: Callable[[Session, RequestContext, Any], Any]
    update: Callable[[Session, RequestContext, str, Any], Any]
    delete: Callable[[Session, RequestContext, str], Any]


def changed(request: Request, records: list[Any]) -> None:
    """After a commit: the agent re-reads the topology; servers' forwards follow their ports."""
    runtime = runtime_from(request)
    nics.notify(runtime)
    servers = [r.device_id for r in records
               if isinstance(r, Port) and r.device_owner.startswith("compute:")
               and r.device_id]
    secgroup_routes.refresh_forwards(runtime, servers)


def resource_routes(res: Resource) -> list[BaseRoute]:
    """GET/POST /{plural}, GET/PUT/DELETE /{plural}/{id} for one resource."""
    path = f"/v2.0/{res.plural}"

    async def list_items(request: Request) -> Response:
        items = await in_session(request, lambda s, c: res.render(s, res.listed(s, c), c))
        url = f"{runtime_from(request).settings.base_url}/network{path}"
        return JSONResponse(query.listing(request.query_params, items, res.plural, url))

    async def show_item(request: Request) -> Response:
        item_id = request.path_params["id"]
        body = await in_session(request, lambda s, c: res.render(
            s, [res.found(s, c, item_id)], c)[0])
        return JSONResponse({res.singular: query.selected(request.query_params, [body])[0]})

    async def create_item(request: Request) -> Response:
        payload = await read_json(request)
        bulk = isinstance(payload, dict) and res.plural in payload
        if bulk and not isinstance(payload[res.plural], list):
            raise NeutronBadRequest(f"Resources required: {{'{res.plural}': [...]}}")
        specs = [{res.singular: spec} for spec in payload[res.plural]] if bulk else [payload]

        def work(session: Session, context: RequestContext) -> tuple[list[Any], list[Any]]:
            made = [res.create(session, context, spec) for spec in specs]
            return made, res.render(session, made, context)

        made, bodies = await in_session(request, work)
        changed(request, made)
        if bulk:
            return JSONResponse({res.plural: bodies}, status_code=201)
        return JSONResponse({res.singular: bodies[0]}, status_code=201)

    async def update_item(request: Request) -> Response:
        payload, item_id = await read_json(request), request.path_params["id"]

        def work(session: Session, context: RequestContext) -> tuple[Any, dict[str, Any]]:
            record = res.update(session, context, item_id, payload)
            return record, res.render(session, [record], context)[0]

        record, body = await in_session(request, work)
        changed(request, [record])
        return JSONResponse({res.singular: body})

    async def delete_item(request: Request) -> Response:
        item_id = request.path_params["id"]
        record = await in_session(request, lambda s, c: res.delete(s, c, item_id))
        changed(request, [record])
        return Response(status_code=204)

    return [
        Route(path, list_items), Route(path, create_item, methods=["POST"]),
        Route(path + "/{id}", show_item), Route(path + "/{id}", update_item, methods=["PUT"]),
        Route(path + "/{id}", delete_item, methods=["DELETE"]),
    ]


def resources(runtime: Runtime) -> list[Resource]:
    settings = runtime.settings.network
    return [
        Resource(
            "network", "networks", networks.list_networks, networks.get_network,
            views.network_views,
            lambda s, c, b: networks.create_network(s, c, b, settings),
            lambda s, c, i, b: networks.update_network(s, c, i, b, settings),
            networks.delete_network),
        Resource(
            "subnet", "subnets", subnets.list_subnets, subnets.get_subnet,
            lambda s, items, _c: views.subnet_views(s, items),
            subnets.create_subnet, subnets.update_subnet, subnets.delete_subnet),
        Resource("port", "ports", ports.list_ports, ports.get_port, views.port_views,
                 ports.create_port, ports.update_port, ports.delete_port),
        Resource(
            "router", "routers", routers.list_routers, routers.get_router,
            lambda s, items, _c: views.router_views(s, items),
            lambda s, c, b: routers.create_router(s, c, b, settings),
            lambda s, c, i, b: routers.update_router(s, c, i, b, settings),
            routers.delete_router),
        Resource(
            "floatingip", "floatingips", floatingips.list_floating_ips,
            floatingips.get_floating_ip, lambda s, items, _c: views.floating_ip_views(s, items),
            floatingips.create_floating_ip, floatingips.update_floating_ip,
            floatingips.delete_floating_ip),
    ]


def build_app(runtime: Runtime) -> Starlette:
    routes: list[BaseRoute] = [
        Route("/", versions), Route("/v2.0", root), Route("/v2.0/", root),
        Route("/v2.0/extensions", extensions), Route("/v2.0/extensions/{alias}", extension),
    ]
    for res in resources(runtime):
        routes += resource_routes(res)
    routes += l3_routes.routes() + secgroup_routes.routes()
    return part_app(runtime, routes, Flavor.NETWORK)
