"""Neutron's security group and rule routes.

A rule change reaches guests two ways: the network agent re-applies the topology
(nftables on real networks), and compute re-reads the host forwards of the servers
using the group (the QEMU user-mode fallback, see `secgroups`).
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
from kumo.network import nics, query, secgroups
from kumo.network.models import SecurityGroup, SecurityGroupRule
from kumo.network.views import when
from kumo.runtime import Runtime


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


def refresh_forwards(runtime: Runtime, server_ids: list[str]) -> None:
    """Compute re-reads these servers' user-mode forwards (when compute runs here)."""
    compute: Any = runtime.services.get("compute")
    if server_ids and compute is not None and hasattr(compute, "submit_forwards"):
        compute.submit_forwards(list(dict.fromkeys(server_ids)))


def _after(request: Request, server_ids: list[str]) -> None:
    runtime = runtime_from(request)
    nics.notify(runtime)
    refresh_forwards(runtime, server_ids)


def _listing(request: Request, items: list[dict[str, Any]], collection: str) -> Response:
    url = f"{runtime_from(request).settings.base_url}/network/v2.0/{collection}"
    return JSONResponse(query.listing(request.query_params, items, collection, url))


async def list_groups(request: Request) -> Response:
    filters = dict(request.query_params)

    def work(session: Session, context: RequestContext) -> list[dict[str, Any]]:
        return [group_body(session, g) for g in secgroups.list_groups(session, context, filters)]

    return _listing(request, await in_session(request, work), "security_groups")


async def show_group(request: Request) -> Response:
    group_id = request.path_params["id"]
    body = await in_session(request, lambda s, c: group_body(
        s, secgroups.get_group(s, c, group_id)))
    return JSONResponse({"security_group": query.selected(request.query_params, [body])[0]})


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
    _after(request, [])
    return Response(status_code=204)


async def list_rules(request: Request) -> Response:
    filters = dict(request.query_params)
    items = await in_session(request, lambda s, c: [
        rule_body(r) for r in secgroups.list_rules(s, c, filters)])
    return _listing(request, items, "security_group_rules")


async def show_rule(request: Request) -> Response:
    rule_id = request.path_params["id"]
    body = await in_session(request, lambda s, c: rule_body(secgroups.get_rule(s, c, rule_id)))
    return JSONResponse({"security_group_rule": body})


async def create_rule(request: Request) -> Response:
    payload = await read_json(request)

    def work(session: Session, context: RequestContext) -> tuple[dict[str, Any], list[str]]:
        rule = secgroups.create_rule(session, context, payload)
        return rule_body(rule), secgroups.servers_using(session, rule.security_group_id)

    body, affected = await in_session(request, work)
    _after(request, affected)
    return JSONResponse({"security_group_rule": body}, status_code=201)


async def delete_rule(request: Request) -> Response:
    rule_id = request.path_params["id"]

    def work(session: Session, context: RequestContext) -> list[str]:
        return secgroups.servers_using(session, secgroups.delete_rule(session, context, rule_id))

    affected = await in_session(request, work)
    _after(request, affected)
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    v = "/v2.0"
    return [
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
