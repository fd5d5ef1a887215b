"""Role grants over HTTP: users and groups on projects, domains and the system.

`/v3/{projects/{p}|domains/{d}|system}/{users|groups}/{id}/roles[/{role}]`:
PUT grants (204, idempotent), HEAD/GET checks (204/404), DELETE revokes (204/404),
GET on `…/roles` lists. `GET /v3/role_assignments` lists them all, as Keystone does.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kumo.errors import NotFound
from kumo.identity import grants, views
from kumo.identity.grants import Actor, AssignmentFilter, Target
from kumo.identity.policy import admin, as_json, caller, deny, flag, run, v3_url
from kumo.identity.tokens import SYSTEM_ALL


def _parties(request: Request) -> tuple[Actor, Target]:
    params = request.path_params
    actor = Actor(user_id=params.get("user_id"), group_id=params.get("group_id"))
    target = Target(project_id=params.get("project_id"), domain_id=params.get("domain_id"),
                    system="project_id" not in params and "domain_id" not in params)
    return actor, target


async def grant(request: Request) -> Response:
    """One role of one actor on one target: PUT, HEAD/GET, DELETE."""
    actor, target = _parties(request)
    role_id = request.path_params["role_id"]
    if request.method == "PUT":
        admin(request, "create_grant")
        await run(request, lambda s: grants.grant(s, actor, target, role_id))
        return Response(status_code=204)
    if request.method == "DELETE":
        admin(request, "revoke_grant")
        await run(request, lambda s: grants.revoke(s, actor, target, role_id))
        return Response(status_code=204)
    context = caller(request)
    if not context.is_admin and actor.user_id != context.user_id:
        raise deny("check_grant")
    if not await run(request, lambda s: grants.has_role(s, actor, target, role_id)):
        raise NotFound(f"Could not find role assignment: role {role_id} of "
                       f"{actor.describe()} on {target.describe()}.")
    return Response(status_code=204)


async def list_grants(request: Request) -> Response:
    actor, target = _parties(request)
    context = caller(request)
    if not context.is_admin and actor.user_id != context.user_id:
        raise deny("list_grants")
    v3 = v3_url(request)

    def work(session: Session) -> list[dict[str, Any]]:
        return [views.role_view(r, v3) for r in grants.roles_of(session, actor, target)]

    return as_json(views.collection("roles", await run(request, work), str(request.url)))


async def list_role_assignments(request: Request) -> Response:
    context = caller(request)
    query = request.query_params
    user_id = query.get("user.id")
    if not context.is_admin:
        # Anyone but the admin sees their own assignments only.
        if user_id not in (None, context.user_id):
            raise deny("list_role_assignments")
        user_id = context.user_id
    system = query.get("scope.system")
    wanted = AssignmentFilter(
        user_id=user_id, group_id=query.get("group.id"),
        project_id=query.get("scope.project.id"), domain_id=query.get("scope.domain.id"),
        system=system is not None, role_id=query.get("role.id"),
        effective="effective" in query and flag(query["effective"]))
    v3, names = v3_url(request), "include_names" in query and flag(query["include_names"])

    def work(session: Session) -> list[dict[str, Any]]:
        if system not in (None, SYSTEM_ALL):
            return []
        rows = grants.list_assignments(session, wanted)
        return [views.assignment_view(session, row, v3, names=names) for row in rows]

    document = views.collection("role_assignments", await run(request, work), str(request.url))
    return as_json(document)


def routes() -> list[BaseRoute]:
    result: list[BaseRoute] = [
        Route("/v3/role_assignments", list_role_assignments, methods=["GET"])]
    handlers: tuple[tuple[str, Callable[[Request], Awaitable[Response]], list[str]], ...] = (
        ("/roles", list_grants, ["GET"]),
        ("/roles/{role_id}", grant, ["PUT", "HEAD", "GET", "DELETE"]),
    )
    for target in ("/v3/projects/{project_id}", "/v3/domains/{domain_id}", "/v3/system"):
        for actor in ("/users/{user_id}", "/groups/{group_id}"):
            for suffix, handler, methods in handlers:
                result.append(Route(target + actor + suffix, handler, methods=methods))
    return result
