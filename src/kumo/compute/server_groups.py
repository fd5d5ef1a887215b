"""os-server-groups: servers kept on one host (affinity) or on different hosts (anti-affinity).

A server joins a group at create (`os:scheduler_hints: {"group": id}`). Placement
is decided on this host as nova's filters would: an anti-affinity group that already
has `max_server_per_host` live members here (1 unless a 2.64 rule says more) leaves
the new server in ERROR with nova's "No valid host" fault; affinity, and the soft
policies, always fit on one host. With several hosts (scale-out) the same rules
choose among them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumo.api.context import RequestContext
from kumo.api.http import read_json
from kumo.api.parts import in_session, runtime_from
from kumo.compute import quotas
from kumo.compute.microversion import Version, version_of
from kumo.compute.models import DELETED, Server, ServerGroup, ServerGroupMember
from kumo.errors import BadRequest, NotFound

POLICIES = ("affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity")
NO_VALID_HOST = "No valid host was found. There are not enough hosts available."


def members(session: Session, group_id: str) -> list[str]:
    """Ids of the group's servers that are not deleted."""
    return list(session.scalars(
        select(ServerGroupMember.server_id).join(Server, Server.id == ServerGroupMember.server_id)
        .where(ServerGroupMember.group_id == group_id, Server.vm_state != DELETED)
        .order_by(Server.created_at)))


def group_view(session: Session, group: ServerGroup, version: Version) -> dict[str, Any]:
    body: dict[str, Any] = {"id": group.id, "name": group.name,
                            "members": members(session, group.id)}
    if version >= (2, 64):
        body.update(policy=group.policy, rules=dict(group.rules or {}))
    else:
        body.update(policies=[group.policy], metadata={})
    if version >= (2, 13):
        body.update(project_id=group.project_id, user_id=group.user_id)
    return body


def get_group(session: Session, context: RequestContext, group_id: str) -> ServerGroup:
    group = session.get(ServerGroup, group_id)
    if group is None or not (context.is_admin or group.project_id == context.project_id):
        raise NotFound(f"Instance group {group_id} could not be found.")
    return group


def groups_of(session: Session, server_id: str) -> list[str]:
    """The groups a server belongs to (server show's `server_groups`, 2.71)."""
    return list(session.scalars(select(ServerGroupMember.group_id).where(
        ServerGroupMember.server_id == server_id)))


def _policy_and_rules(spec: dict[str, Any], version: Version) -> tuple[str, dict[str, int]]:
    if version >= (2, 64):
        if "policies" in spec:
            raise BadRequest("Additional properties are not allowed ('policies' was unexpected)")
        policy, rules = spec.get("policy"), spec.get("rules", {})
        if policy not in POLICIES:
            raise BadRequest(f"Invalid input for field/attribute policy: {policy!r} is not "
                             f"one of {', '.join(POLICIES)}")
        if not isinstance(rules, dict) or set(rules) - {"max_server_per_host"}:
            raise BadRequest("Invalid input for field/attribute rules: only "
                             "max_server_per_host is allowed")
        if rules and policy != "anti-affinity":
            raise BadRequest("Only anti-affinity policy supports rules.")
        value = rules.get("max_server_per_host")
        if value is not None and (isinstance(value, bool) or not str(value).isdigit()
                                  or int(value) < 1):
            raise BadRequest("Invalid input for field/attribute max_server_per_host: "
                             "an integer >= 1")
        return policy, ({"max_server_per_host": int(value)} if value is not None else {})
    if "policy" in spec or "rules" in spec:
        raise BadRequest("Additional properties are not allowed ('policy' was unexpected)")
    policies = spec.get("policies")
    allowed = POLICIES if version >= (2, 15) else POLICIES[:2]
    if (not isinstance(policies, list) or len(policies) != 1 or policies[0] not in allowed):
        raise BadRequest("Invalid input for field/attribute policies: exactly one of "
                         f"{', '.join(allowed)}")
    return policies[0], {}


def create_group(session: Session, context: RequestContext, body: Any,
                 quota: Any, version: Version) -> ServerGroup:
    """POST /os-server-groups."""
    context.require_writer()
    spec = body.get("server_group") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise BadRequest("Invalid input: 'server_group' is a required property")
    name = spec.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise BadRequest("Invalid input for field/attribute name: 1-255 characters required")
    policy, rules = _policy_and_rules(spec, version)
    quotas.check_server_groups(session, quota, context)
    group = ServerGroup(name=name, project_id=context.project_id, user_id=context.user_id,
                        policy=policy, rules=rules)
    session.add(group)
    session.flush()
    return group


def list_groups(session: Session, context: RequestContext,
                query: dict[str, str]) -> list[ServerGroup]:
    stmt = select(ServerGroup).order_by(ServerGroup.created_at, ServerGroup.id)
    if not (context.is_admin and query.get("all_projects", "").lower() in ("1", "true", "")
            and "all_projects" in query):
        stmt = stmt.where(ServerGroup.project_id == context.project_id)
    found = list(session.scalars(stmt))
    try:
        offset = int(query.get("offset", 0))
        limit = int(query["limit"]) if "limit" in query else None
    except ValueError:
        raise BadRequest("Invalid limit or offset: whole numbers required") from None
    if offset < 0 or (limit is not None and limit < 1):
        raise BadRequest("Invalid limit or offset: limit >= 1, offset >= 0")
    found = found[offset:]
    return found[:limit] if limit is not None else found


def join(session: Session, context: RequestContext, server: Server, hints: Any,
         quota: Any, decide: bool = True) -> str | None:
    """Put a new server in the group its scheduler hints name; the placement fault or None.

    With several hosts (`decide` false) the filter scheduler places the server instead.
    """
    if hints is None:
        return None
    if not isinstance(hints, dict):
        raise BadRequest("Invalid input for field/attribute os:scheduler_hints")
    group_id = hints.get("group")
    if group_id is None:
        return None
    if isinstance(group_id, list) and len(group_id) == 1:
        group_id = group_id[0]
    if not isinstance(group_id, str):
        raise BadRequest("Invalid input for field/attribute group: a server group id")
    try:
        group = get_group(session, context, group_id)
    except NotFound:
        raise BadRequest(f"Invalid server group {group_id}: it does not exist") from None
    current = members(session, group.id)
    quotas.check_group_members(session, quota, group.project_id, len(current) + 1)
    session.add(ServerGroupMember(group_id=group.id, server_id=server.id))
    if group.policy != "anti-affinity" or not decide:
        return None
    per_host = int((group.rules or {}).get("max_server_per_host", 1))
    placed = session.scalar(select(func.count()).select_from(Server).where(
        Server.id.in_(current), Server.vm_state != "error")) or 0
    return NO_VALID_HOST if placed >= per_host else None


def delete_group(session: Session, context: RequestContext, group_id: str) -> None:
    context.require_writer()
    session.delete(get_group(session, context, group_id))


# -- routes ---------------------------------------------------------------------

async def _list(request: Request) -> Response:
    mv, query = version_of(request), dict(request.query_params)
    shown = await in_session(request, lambda s, c: [
        group_view(s, g, mv) for g in list_groups(s, c, query)])
    return JSONResponse({"server_groups": shown})


async def _create(request: Request) -> Response:
    body, mv = await read_json(request), version_of(request)
    quota = runtime_from(request).settings.quota
    shown = await in_session(request, lambda s, c: group_view(
        s, create_group(s, c, body, quota, mv), mv))
    return JSONResponse({"server_group": shown})


async def _show(request: Request) -> Response:
    mv, group_id = version_of(request), request.path_params["id"]
    shown = await in_session(request, lambda s, c: group_view(s, get_group(s, c, group_id), mv))
    return JSONResponse({"server_group": shown})


async def _delete(request: Request) -> Response:
    group_id = request.path_params["id"]
    await in_session(request, lambda s, c: delete_group(s, c, group_id))
    return Response(status_code=204)


def routes(prefix: str) -> list[Route]:
    return [
        Route(prefix + "/os-server-groups", _list),
        Route(prefix + "/os-server-groups", _create, methods=["POST"]),
        Route(prefix + "/os-server-groups/{id}", _show),
        Route(prefix + "/os-server-groups/{id}", _delete, methods=["DELETE"]),
    ]
