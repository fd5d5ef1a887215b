"""Small per-server compute routes: addresses (`/ips`), the server's ports
(`/os-interface`, read only), the server password, tags, the
server's security groups, and nova's security group proxy (`/os-security-groups`, below 2.36)
over Neutron's groups in `kumo.network.secgroups`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumo.api.context import RequestContext
from kumo.api.http import read_json
from kumo.api.parts import in_session
from kumo.compute import servers, views
from kumo.compute.microversion import version_of
from kumo.errors import BadRequest, NotFound
from kumo.network import nics, secgroups
from kumo.network.models import Port, SecurityGroup, SecurityGroupRule


async def server_ips(request: Request) -> Response:
    server_id, network = request.path_params["id"], request.path_params.get("network")
    found = await in_session(request, lambda s, c: views.addresses(
        servers.get_server(s, c, server_id)))
    shown = {net: [{"version": a["version"], "addr": a["addr"]} for a in entries]
             for net, entries in found.items()}
    if network is None:
        return JSONResponse({"addresses": shown})
    if network not in shown:
        raise NotFound("Instance is not a member of specified network")
    return JSONResponse({network: shown[network]})


def _interfaces(session: Session, server_id: str) -> list[dict[str, Any]]:
    found = nics.server_nics(session, server_id)
    states = {port.id: port.status for port in session.scalars(
        select(Port).where(Port.id.in_([n.port_id for n in found])))}
    return [{"port_state": states.get(n.port_id, "DOWN"), "port_id": n.port_id,
             "net_id": n.network_id, "mac_addr": n.mac,
             "fixed_ips": [{"subnet_id": f.subnet_id, "ip_address": f.ip_address}
                           for f in n.fixed_ips]} for n in found]


async def server_interfaces(request: Request) -> Response:
    """Nova's `os-interface` list and show: the server's Neutron ports (attaching and
    detaching ports to a running server is not in kumo)."""
    server_id, port_id = request.path_params["id"], request.path_params.get("port_id")

    def read(session: Session, context: RequestContext) -> list[dict[str, Any]]:
        servers.get_server(session, context, server_id)
        return _interfaces(session, server_id)

    found = await in_session(request, read)
    if port_id is None:
        return JSONResponse({"interfaceAttachments": found})
    for attachment in found:
        if attachment["port_id"] == port_id:
            return JSONResponse({"interfaceAttachment": attachment})
    raise NotFound(f"Port {port_id} is not attached")


async def server_password(request: Request) -> Response:
    """Guests post no password to kumo's metadata service: nova's answer is then ""."""
    server_id = request.path_params["id"]
    await in_session(request, lambda s, c: servers.get_server(s, c, server_id))
    if request.method == "DELETE":
        return Response(status_code=204)
    return JSONResponse({"password": ""})


def _rule_view(rule: SecurityGroupRule) -> dict[str, Any]:
    low, high = rule.port_range_min, rule.port_range_max
    return {"id": rule.id, "parent_group_id": rule.security_group_id,
            "ip_protocol": secgroups.canonical_protocol(rule.protocol),
            "from_port": -1 if low is None else low, "to_port": -1 if high is None else high,
            "ip_range": {"cidr": rule.remote_ip_prefix} if rule.remote_ip_prefix else {},
            "group": {}}


def _group_view(session: Session, group: SecurityGroup) -> dict[str, Any]:
    rules = [r for r in secgroups.rules_of(session, group.id) if r.direction == "ingress"]
    return {"id": group.id, "name": group.name, "description": group.description,
            "tenant_id": group.project_id, "rules": [_rule_view(r) for r in rules]}


async def server_groups_of(request: Request) -> Response:
    server_id = request.path_params["id"]

    def work(session: Session, context: RequestContext) -> list[dict[str, Any]]:
        server = servers.get_server(session, context, server_id)
        found = [session.get(SecurityGroup, g) for g in server.security_group_ids or []]
        return [_group_view(session, g) for g in found if g is not None]

    return JSONResponse({"security_groups": await in_session(request, work)})


def _proxy_allowed(request: Request) -> None:
    if version_of(request) >= (2, 36):
        raise NotFound("The resource could not be found.")


async def proxy_groups(request: Request) -> Response:
    _proxy_allowed(request)
    if request.method == "GET":
        return JSONResponse({"security_groups": await in_session(request, lambda s, c: [
            _group_view(s, g) for g in secgroups.list_groups(s, c, {})])})
    body = await read_json(request)
    spec = body.get("security_group") if isinstance(body, dict) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) \
            or not spec["name"].strip():
        raise BadRequest("Security group name is required")
    payload = {"security_group": {"name": spec["name"],
                                  "description": spec.get("description", "")}}
    shown = await in_session(request, lambda s, c: _group_view(
        s, secgroups.create_group(s, c, payload)))
    return JSONResponse({"security_group": shown})


async def proxy_group(request: Request) -> Response:
    _proxy_allowed(request)
    group_id = request.path_params["id"]

    def work(session: Session, context: RequestContext) -> dict[str, Any] | None:
        try:
            group = secgroups.get_group(session, context, group_id)
        except NotFound:
            raise NotFound(f"Security group {group_id} not found.") from None
        if request.method == "DELETE":
            secgroups.delete_group(session, context, group.id)
            return None
        return _group_view(session, group)

    shown = await in_session(request, work)
    if shown is None:
        return Response(status_code=202)
    return JSONResponse({"security_group": shown})


def _check_tag(tag: Any) -> str:
    if not isinstance(tag, str) or not 1 <= len(tag) <= 60 or "/" in tag or "," in tag:
        raise BadRequest(f"Invalid tag {tag!r}: 1-60 characters, no '/' or ','")
    return tag


async def server_tags(request: Request) -> Response:
    """/servers/{id}/tags[/{tag}] (2.26): list, replace, clear, check, add, remove."""
    if version_of(request) < (2, 26):
        raise NotFound("The resource could not be found.")
    server_id, tag = request.path_params["id"], request.path_params.get("tag")
    body = await read_json(request) if request.method == "PUT" and tag is None else None

    def work(session: Session, context: RequestContext) -> list[str] | bool | None:
        server = servers.get_server(session, context, server_id)
        tags = list(server.tags or [])
        if request.method == "GET":
            if tag is not None and tag not in tags:
                raise NotFound(f"Tag {tag} not found for instance {server_id}")
            return tags
        context.require_writer()
        servers.check_unlocked(context, server)
        if tag is None:
            if request.method == "DELETE":
                server.tags = []
                return None
            wanted = body.get("tags") if isinstance(body, dict) else None
            if not isinstance(wanted, list) or len(wanted) > 50:
                raise BadRequest("Invalid input: 'tags' must be a list of at most 50 tags")
            server.tags = list(dict.fromkeys(_check_tag(t) for t in wanted))
            return list(server.tags)
        if request.method == "DELETE":
            if tag not in tags:
                raise NotFound(f"Tag {tag} not found for instance {server_id}")
            server.tags = [t for t in tags if t != tag]
            return None
        if tag in tags:
            return False
        if len(tags) >= 50:
            raise BadRequest("Instance has too many tags (at most 50)")
        server.tags = [*tags, _check_tag(tag)]
        return True

    found = await in_session(request, work)
    if request.method == "GET" and tag is not None:
        return Response(status_code=204)
    if isinstance(found, list):
        return JSONResponse({"tags": found})
    if found is True:  # a new tag: 201 with its location; an existing one: 204
        return Response(status_code=201, headers={"Location": str(request.url)})
    return Response(status_code=204)


def routes(prefix: str) -> list[Route]:
    s = prefix + "/servers/{id}"
    return [
        Route(s + "/ips", server_ips), Route(s + "/ips/{network}", server_ips),
        Route(s + "/os-interface", server_interfaces),
        Route(s + "/os-interface/{port_id}", server_interfaces),
        Route(s + "/os-server-password", server_password, methods=["GET", "DELETE"]),
        Route(s + "/os-security-groups", server_groups_of),
        Route(s + "/tags", server_tags, methods=["GET", "PUT", "DELETE"]),
        Route(s + "/tags/{tag}", server_tags, methods=["GET", "PUT", "DELETE"]),
        Route(prefix + "/os-security-groups", proxy_groups, methods=["GET", "POST"]),
        Route(prefix + "/os-security-groups/{id}", proxy_group, methods=["GET", "DELETE"]),
    ]
