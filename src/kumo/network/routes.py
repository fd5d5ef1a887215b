"""Neutron v2.0 subset: the one network, its subnet, ports, security groups and rules.

Guests use QEMU user networking, so there is exactly one network (`kumo-net`,
169.254.0.0/16) and nothing to create or attach; security groups are real and
decide which guest ports kumo forwards (see `secgroups`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumo.api.context import RequestContext, context_of
from kumo.api.errors import Flavor
from kumo.api.http import read_json
from kumo.api.parts import in_session, part_app, runtime_from
from kumo.compute.instance_source import NETWORK_ID
from kumo.compute.models import Server
from kumo.compute.servers import NETWORK_NAME
from kumo.compute.service import compute_of
from kumo.compute.views import FIXED_IP, MAC_ADDRESS
from kumo.errors import NotFound
from kumo.network import secgroups
from kumo.network.models import SecurityGroup, SecurityGroupRule
from kumo.runtime import Runtime

T = TypeVar("T")
SUBNET_ID = "3c1b8f0e-5a4d-4b8e-8c2a-6b756d6f7375"
CREATED = "2025-01-01T00:00:00Z"
EXTENSIONS = (
    ("security-group", "security-group", "The security groups extension."),
    ("project-id", "project-id", "Extension that indicates that project_id is enabled."),
    ("standard-attr-description", "standard-attr-description", "Description of resources."),
    ("standard-attr-timestamp", "standard-attr-timestamp", "created_at/updated_at."),
    ("standard-attr-revisions", "standard-attr-revisions", "revision_number of resources."),
    ("stateful-security-group", "stateful-security-group", "Stateful security groups."),
    ("net-mtu", "net-mtu", "The network's MTU."),
)


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")




def shaped(request: Request, items: list[dict[str, Any]], filters: tuple[str, ...] = ()
           ) -> list[dict[str, Any]]:
    """Apply simple exact-match filters and Neutron's `fields=` selection."""
    query = request.query_params
    for key in filters:
        if key in query:
            items = [i for i in items if str(i.get(key)).lower() == query[key].lower()]
    fields = query.getlist("fields")
    if fields:
        items = [{k: v for k, v in i.items() if k in fields} for i in items]
    return items


async def versions(request: Request) -> Response:
    href = f"{runtime_from(request).settings.base_url}/network/v2.0/"
    return JSONResponse({"versions": [{"id": "v2.0", "status": "CURRENT",
                                       "links": [{"rel": "self", "href": href}]}]})


async def extensions(_request: Request) -> Response:
    return JSONResponse({"extensions": [
        {"alias": alias, "name": name, "description": text, "links": [],
         "updated": "2025-01-01T00:00:00-00:00"} for alias, name, text in EXTENSIONS]})


def network_body(request: Request) -> dict[str, Any]:
    settings = runtime_from(request).settings
    return {
        "id": NETWORK_ID, "name": NETWORK_NAME, "status": "ACTIVE", "admin_state_up": True,
        "subnets": [SUBNET_ID], "shared": True, "router:external": False,
        "mtu": settings.metadata.mtu, "project_id": "", "tenant_id": "",
        "port_security_enabled": True, "is_default": True, "l2_adjacency": True,
        "description": "QEMU user networking: one private 169.254.0.0/16 per guest; SSH and "
                       "other allowed ports reach guests through 127.0.0.1 forwards",
        "availability_zones": ["nova"], "availability_zone_hints": [],
        "ipv4_address_scope": None, "ipv6_address_scope": None, "tags": [],
        "created_at": CREATED, "updated_at": CREATED, "revision_number": 1,
    }


def subnet_body(request: Request) -> dict[str, Any]:
    settings = runtime_from(request).settings
    # With outbound traffic off QEMU runs `restrict=on` and its DHCP offers no router.
    gateway = "169.254.2.2" if settings.compute.allow_guest_outbound else None
    return {
        "id": SUBNET_ID, "name": "kumo-subnet", "network_id": NETWORK_ID, "ip_version": 4,
        "cidr": "169.254.0.0/16", "gateway_ip": gateway, "enable_dhcp": True,
        "allocation_pools": [{"start": FIXED_IP, "end": FIXED_IP}],
        "dns_nameservers": list(settings.metadata.dns_nameservers), "host_routes": [],
        "project_id": "", "tenant_id": "", "description": "each guest gets 169.254.2.15",
        "subnetpool_id": None, "ipv6_ra_mode": None, "ipv6_address_mode": None,
        "service_types": [], "tags": [], "created_at": CREATED, "updated_at": CREATED,
        "revision_number": 1,
    }


async def list_networks(request: Request) -> Response:
    context_of(request)
    items = shaped(request, [network_body(request)], ("id", "name", "shared", "status",
                                                      "router:external", "is_default"))
    return JSONResponse({"networks": items})


async def show_network(request: Request) -> Response:
    context_of(request)
    if request.path_params["id"] not in (NETWORK_ID, NETWORK_NAME):
        raise NotFound(f"Network {request.path_params['id']} could not be found.")
    return JSONResponse({"network": network_body(request)})


async def list_subnets(request: Request) -> Response:
    context_of(request)
    items = shaped(request, [subnet_body(request)], ("id", "name", "network_id", "ip_version"))
    return JSONResponse({"subnets": items})


async def show_subnet(request: Request) -> Response:
    context_of(request)
    if request.path_params["id"] not in (SUBNET_ID, "kumo-subnet"):
        raise NotFound(f"Subnet {request.path_params['id']} could not be found.")
    return JSONResponse({"subnet": subnet_body(request)})


def port_body(server: Server) -> dict[str, Any]:
    return {
        "id": server.id, "name": "", "network_id": NETWORK_ID, "device_id": server.id,
        "device_owner": "compute:nova", "mac_address": MAC_ADDRESS, "status": "ACTIVE"
        if server.vm_state == "active" else "DOWN", "admin_state_up": True,
        "fixed_ips": [{"subnet_id": SUBNET_ID, "ip_address": FIXED_IP}],
        "security_groups": list(server.security_group_ids or []),
        "project_id": server.project_id, "tenant_id": server.project_id,
        "binding:vnic_type": "normal", "port_security_enabled": True, "description": "",
        "tags": [], "created_at": when(server.created_at), "updated_at": when(server.updated_at),
        "revision_number": 1,
    }


async def list_ports(request: Request) -> Response:
    def work(session: Session, context: RequestContext) -> list[dict[str, Any]]:
        stmt = select(Server)
        if not context.is_admin:
            stmt = stmt.where(Server.project_id == context.project_id)
        return [port_body(s) for s in session.scalars(stmt) if s.host]

    items = shaped(request, await in_session(request, work),
                   ("id", "device_id", "network_id", "device_owner", "status", "project_id"))
    return JSONResponse({"ports": items})


def group_body(session: Session, group: SecurityGroup) -> dict[str, Any]:
    return {
        "id": group.id, "name": group.name, "description": group.description,
        "project_id": group.project_id, "tenant_id": group.project_id,
        "stateful": group.stateful, "shared": False, "tags": [],
        "security_group_rules": [rule_body(r) for r in secgroups.rules_of(session, group.id)],
        "created_at": when(group.created_at), "updated_at": when(group.updated_at),
        "revision_number": group.revision_number,
    }


def rule_body(rule: SecurityGroupRule) -> dict[str, Any]:
    return {
        "id": rule.id, "security_group_id": rule.security_group_id, "direction": rule.direction,
        "ethertype": rule.ethertype, "protocol": rule.protocol,
        "port_range_min": rule.port_range_min, "port_range_max": rule.port_range_max,
        "remote_ip_prefix": rule.remote_ip_prefix, "normalized_cidr": rule.remote_ip_prefix,
        "remote_group_id": rule.remote_group_id, "remote_address_group_id": None,
        "description": rule.description, "project_id": rule.project_id,
        "tenant_id": rule.project_id, "tags": [], "created_at": when(rule.created_at),
        "updated_at": when(rule.created_at), "revision_number": 0,
    }


async def list_groups(request: Request) -> Response:
    filters = dict(request.query_params)

    def work(session: Session, context: RequestContext) -> list[dict[str, Any]]:
        return [group_body(session, g) for g in secgroups.list_groups(session, context, filters)]

    return JSONResponse({"security_groups": shaped(request, await in_session(request, work))})


async def show_group(request: Request) -> Response:
    group_id = request.path_params["id"]
    body = await in_session(request, lambda s, c: group_body(
        s, secgroups.get_group(s, c, group_id)))
    return JSONResponse({"security_group": body})


async def create_group(request: Request) -> Response:
    payload = await read_json(request)
    body = await in_session(request, lambda s, c: group_body(
        s, secgroups.create_group(s, c, payload)))
    return JSONResponse({"security_group": body}, status_code=201)


async def update_group(request: Request) -> Response:
    payload, group_id = await read_json(request), request.path_params["id"]
    body = await in_session(request, lambda s, c: group_body(
        s, secgroups.update_group(s, c, group_id, payload)))
    return JSONResponse({"security_group": body})


async def delete_group(request: Request) -> Response:
    group_id = request.path_params["id"]
    await in_session(request, lambda s, c: secgroups.delete_group(s, c, group_id))
    return Response(status_code=204)


def _refresh(request: Request, session: Session, group_id: str) -> list[str]:
    return [s.id for s in secgroups.servers_using(session, group_id)]


async def list_rules(request: Request) -> Response:
    filters = dict(request.query_params)
    items = await in_session(request, lambda s, c: [
        rule_body(r) for r in secgroups.list_rules(s, c, filters)])
    return JSONResponse({"security_group_rules": shaped(request, items)})


async def show_rule(request: Request) -> Response:
    rule_id = request.path_params["id"]
    body = await in_session(request, lambda s, c: rule_body(secgroups.get_rule(s, c, rule_id)))
    return JSONResponse({"security_group_rule": body})


async def create_rule(request: Request) -> Response:
    payload = await read_json(request)

    def work(session: Session, context: RequestContext) -> tuple[dict[str, Any], list[str]]:
        rule = secgroups.create_rule(session, context, payload)
        return rule_body(rule), _refresh(request, session, rule.security_group_id)

    body, affected = await in_session(request, work)
    compute_of(runtime_from(request)).submit_forwards(affected)
    return JSONResponse({"security_group_rule": body}, status_code=201)


async def delete_rule(request: Request) -> Response:
    rule_id = request.path_params["id"]

    def work(session: Session, context: RequestContext) -> list[str]:
        return _refresh(request, session, secgroups.delete_rule(session, context, rule_id))

    affected = await in_session(request, work)
    compute_of(runtime_from(request)).submit_forwards(affected)
    return Response(status_code=204)


def build_app(runtime: Runtime) -> Starlette:
    v = "/v2.0"
    routes = [
        Route("/", versions), Route(v + "/extensions", extensions),
        Route(v + "/networks", list_networks), Route(v + "/networks/{id}", show_network),
        Route(v + "/subnets", list_subnets), Route(v + "/subnets/{id}", show_subnet),
        Route(v + "/ports", list_ports),
        Route(v + "/security-groups", list_groups),
        Route(v + "/security-groups", create_group, methods=["POST"]),
        Route(v + "/security-groups/{id}", show_group),
        Route(v + "/security-groups/{id}", update_group, methods=["PUT"]),
        Route(v + "/security-groups/{id}", delete_group, methods=["DELETE"]),
        Route(v + "/security-group-rules", list_rules),
        Route(v + "/security-group-rules", create_rule, methods=["POST"]),
        Route(v + "/security-group-rules/{id}", show_rule),
        Route(v + "/security-group-rules/{id}", delete_rule, methods=["DELETE"]),
    ]
    return part_app(runtime, routes, Flavor.NETWORK)
