"""Keystone v3 domains, projects, users, roles and role assignments over HTTP.

Thin handlers: check the caller (Keystone's default policy: identity writes need
the admin role; a non-admin may read itself and the projects it has a role on),
parse, call `kumo.identity.service`, shape with `kumo.identity.views`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumo.api.context import RequestContext, context_of
from kumo.api.http import read_json
from kumo.api.parts import runtime_from
from kumo.db.engine import session_scope
from kumo.errors import Forbidden, NotFound
from kumo.identity import schema, service, views

T = TypeVar("T")


def _v3(request: Request) -> str:
    from kumo.api.app import endpoint

    return endpoint(runtime_from(request), "identity")


async def _run(request: Request, work: Callable[[Session], T]) -> T:
    """Run `work` in a worker thread inside one transaction (all or nothing)."""
    sessions = runtime_from(request).sessions

    def call() -> T:
        with session_scope(sessions) as session:
            return work(session)

    return await run_in_threadpool(call)


def _deny(action: str) -> Forbidden:
    return Forbidden(f"You are not authorized to perform the requested action: identity:{action}.")


def _admin(request: Request, action: str) -> RequestContext:
    context = context_of(request)
    if not context.is_admin:
        raise _deny(action)
    return context


def _flag(raw: str) -> bool:
    # Keystone reads these query values as false; anything else (even empty) as true.
    return raw.strip().lower() not in ("0", "false", "no", "off")


def _filters(request: Request) -> dict[str, Any]:
    query = request.query_params
    filters: dict[str, Any] = {}
    if "name" in query:
        filters["name"] = query["name"]
    if "enabled" in query:
        filters["enabled"] = _flag(query["enabled"])
    for key in ("tags", "tags-any", "not-tags", "not-tags-any"):
        if key in query:
            filters[key] = [tag for tag in query[key].split(",") if tag]
    return filters


def _domain_filter_excludes(request: Request) -> bool:
    """A list filtered on another domain, or asking for domains-as-projects, is empty."""
    query = request.query_params
    if query.get("domain_id", views.DEFAULT_DOMAIN_ID) != views.DEFAULT_DOMAIN_ID:
        return True
    if query.get("parent_id", views.DEFAULT_DOMAIN_ID) != views.DEFAULT_DOMAIN_ID:
        return True
    return "is_domain" in query and _flag(query["is_domain"])


def _json(document: dict[str, Any], status: int = 200) -> JSONResponse:
    return JSONResponse(document, status_code=status)


# ---- domains (kumo has one: Default) --------------------------------------------------


async def list_domains(request: Request) -> Response:
    context_of(request)
    query = request.query_params
    matches = query.get("name", views.DEFAULT_DOMAIN_NAME) == views.DEFAULT_DOMAIN_NAME
    if "enabled" in query and not _flag(query["enabled"]):
        matches = False
    items = [views.domain_view(_v3(request))] if matches else []
    return _json(views.collection("domains", items, str(request.url)))


async def show_domain(request: Request) -> Response:
    context_of(request)
    domain_id = request.path_params["domain_id"]
    if domain_id != views.DEFAULT_DOMAIN_ID:
        raise NotFound(f"Could not find domain: {domain_id}.")
    return _json({"domain": views.domain_view(_v3(request))})


async def auth_domains(request: Request) -> Response:
    context_of(request)  # kumo grants roles on projects only, so no domain is scoped to
    return _json(views.collection("domains", [], str(request.url)))


# ---- projects -------------------------------------------------------------------------


async def list_projects(request: Request) -> Response:
    """All projects for the admin; for anyone else only the projects they have a role on.

    (Keystone refuses non-admins here with 403 and `openstack project list` then
    falls back to /users/{me}/projects; showing them their own is kinder and lets
    `openstack project show NAME` work for a member.)
    """
    context = context_of(request)
    filters, v3 = _filters(request), _v3(request)
    excluded = _domain_filter_excludes(request)

    def work(session: Session) -> list[dict[str, Any]]:
        if excluded:
            return []
        found = service.list_projects(session, filters)
        if not context.is_admin:
            own = {p.id for p in service.user_projects(session, context.user_id)}
            found = [p for p in found if p.id in own]
        return [views.project_view(p, v3) for p in found]

    return _json(views.collection("projects", await _run(request, work), str(request.url)))


async def create_project(request: Request) -> Response:
    _admin(request, "create_project")
    body = schema.object_under(await read_json(request), "project")
    fields, v3 = schema.project_fields(body, creating=True), _v3(request)

    def work(session: Session) -> dict[str, Any]:
        return views.project_view(service.create_project(session, fields), v3)

    return _json({"project": await _run(request, work)}, 201)


async def show_project(request: Request) -> Response:
    context = context_of(request)
    project_id, v3 = request.path_params["project_id"], _v3(request)

    def work(session: Session) -> dict[str, Any]:
        if not context.is_admin and project_id not in {
            p.id for p in service.user_projects(session, context.user_id)
        }:
            raise _deny("get_project")
        return views.project_view(service.get_project(session, project_id), v3)

    return _json({"project": await _run(request, work)})


async def update_project(request: Request) -> Response:
    _admin(request, "update_project")
    body = schema.object_under(await read_json(request), "project")
    fields, v3 = schema.project_fields(body, creating=False), _v3(request)
    project_id = request.path_params["project_id"]

    def work(session: Session) -> dict[str, Any]:
        return views.project_view(service.update_project(session, project_id, fields), v3)

    return _json({"project": await _run(request, work)})


async def delete_project(request: Request) -> Response:
    _admin(request, "delete_project")
    project_id = request.path_params["project_id"]
    await _run(request, lambda session: service.delete_project(session, project_id))
    return Response(status_code=204)


async def _projects_of(request: Request, user_id: str) -> Response:
    v3 = _v3(request)

    def work(session: Session) -> list[dict[str, Any]]:
        return [views.project_view(p, v3) for p in service.user_projects(session, user_id)]

    return _json(views.collection("projects", await _run(request, work), str(request.url)))


async def list_user_projects(request: Request) -> Response:
    context = context_of(request)
    user_id = request.path_params["user_id"]
    if not context.is_admin and user_id != context.user_id:
        raise _deny("list_user_projects")
    return await _projects_of(request, user_id)


async def auth_projects(request: Request) -> Response:
    return await _projects_of(request, context_of(request).user_id)


# ---- users ----------------------------------------------------------------------------


async def list_users(request: Request) -> Response:
    """All users for the admin; anyone else sees only themselves."""
    context = context_of(request)
    filters, v3 = _filters(request), _v3(request)
    excluded = _domain_filter_excludes(request)

    def work(session: Session) -> list[dict[str, Any]]:
        if excluded:
            return []
        found = service.list_users(session, filters)
        if not context.is_admin:
            found = [u for u in found if u.id == context.user_id]
        return [views.user_view(u, v3) for u in found]

    return _json(views.collection("users", await _run(request, work), str(request.url)))


async def create_user(request: Request) -> Response:
    _admin(request, "create_user")
    body = schema.object_under(await read_json(request), "user")
    fields, v3 = schema.user_fields(body, creating=True), _v3(request)

    def work(session: Session) -> dict[str, Any]:
        return views.user_view(service.create_user(session, fields), v3)

    return _json({"user": await _run(request, work)}, 201)


async def show_user(request: Request) -> Response:
    context = context_of(request)
    user_id, v3 = request.path_params["user_id"], _v3(request)
    if not context.is_admin and user_id != context.user_id:
        raise _deny("get_user")

    def work(session: Session) -> dict[str, Any]:
        return views.user_view(service.get_user(session, user_id), v3)

    return _json({"user": await _run(request, work)})


async def update_user(request: Request) -> Response:
    _admin(request, "update_user")
    body = schema.object_under(await read_json(request), "user")
    fields, v3 = schema.user_fields(body, creating=False), _v3(request)
    user_id = request.path_params["user_id"]

    def work(session: Session) -> dict[str, Any]:
        return views.user_view(service.update_user(session, user_id, fields), v3)

    return _json({"user": await _run(request, work)})


async def delete_user(request: Request) -> Response:
    _admin(request, "delete_user")
    user_id = request.path_params["user_id"]
    await _run(request, lambda session: service.delete_user(session, user_id))
    return Response(status_code=204)


async def change_password(request: Request) -> Response:
    """`openstack user password set`: a user changes their own password."""
    context = context_of(request)
    user_id = request.path_params["user_id"]
    if user_id != context.user_id:
        raise _deny("change_password")
    body = schema.object_under(await read_json(request), "user")
    original = schema.password_value(body, "original_password")
    password = schema.password_value(body)
    await _run(request, lambda s: service.change_password(s, user_id, original, password))
    return Response(status_code=204)


# ---- roles ----------------------------------------------------------------------------


async def list_roles(request: Request) -> Response:
    context_of(request)
    name, v3 = request.query_params.get("name"), _v3(request)
    if request.query_params.get("domain_id"):
        return _json(views.collection("roles", [], str(request.url)))  # no domain roles

    def work(session: Session) -> list[dict[str, Any]]:
        return [views.role_view(r, v3) for r in service.list_roles(session, name)]

    return _json(views.collection("roles", await _run(request, work), str(request.url)))


async def show_role(request: Request) -> Response:
    context_of(request)
    role_id, v3 = request.path_params["role_id"], _v3(request)

    def work(session: Session) -> dict[str, Any]:
        return views.role_view(service.get_role(session, role_id), v3)

    return _json({"role": await _run(request, work)})


async def create_role(request: Request) -> Response:
    _admin(request, "create_role")
    body = schema.object_under(await read_json(request), "role")
    fields, v3 = schema.role_fields(body), _v3(request)

    def work(session: Session) -> dict[str, Any]:
        return views.role_view(service.create_role(session, fields), v3)

    return _json({"role": await _run(request, work)}, 201)


async def delete_role(request: Request) -> Response:
    _admin(request, "delete_role")
    role_id = request.path_params["role_id"]
    await _run(request, lambda session: service.delete_role(session, role_id))
    return Response(status_code=204)


# ---- role assignments -----------------------------------------------------------------


def _grant_ids(request: Request) -> tuple[str, str, str]:
    params = request.path_params
    return params["project_id"], params["user_id"], params["role_id"]


async def grant_role(request: Request) -> Response:
    _admin(request, "create_grant")
    ids = _grant_ids(request)
    await _run(request, lambda session: service.grant_role(session, *ids))
    return Response(status_code=204)


async def check_grant(request: Request) -> Response:
    context = context_of(request)
    ids = _grant_ids(request)
    if not context.is_admin and ids[1] != context.user_id:
        raise _deny("check_grant")
    if not await _run(request, lambda session: service.has_role(session, *ids)):
        raise NotFound(f"Could not find role assignment: role {ids[2]} of user {ids[1]} "
                       f"on project {ids[0]}.")
    return Response(status_code=204)


async def revoke_grant(request: Request) -> Response:
    _admin(request, "revoke_grant")
    ids = _grant_ids(request)
    await _run(request, lambda session: service.revoke_role(session, *ids))
    return Response(status_code=204)


async def list_grants(request: Request) -> Response:
    context = context_of(request)
    project_id, user_id = request.path_params["project_id"], request.path_params["user_id"]
    if not context.is_admin and user_id != context.user_id:
        raise _deny("list_grants")
    v3 = _v3(request)

    def work(session: Session) -> list[dict[str, Any]]:
        roles = service.project_user_roles(session, project_id, user_id)
        return [views.role_view(r, v3) for r in roles]

    return _json(views.collection("roles", await _run(request, work), str(request.url)))


async def list_role_assignments(request: Request) -> Response:
    context = context_of(request)
    query = request.query_params
    user_id = query.get("user.id")
    if not context.is_admin:
        # Anyone but the admin sees their own assignments only.
        if user_id not in (None, context.user_id):
            raise _deny("list_role_assignments")
        user_id = context.user_id
    v3, names = _v3(request), "include_names" in query and _flag(query["include_names"])
    # kumo has no groups, domain grants or system grants: those filters match nothing.
    empty = any(key in query for key in ("group.id", "scope.domain.id", "scope.system"))

    def work(session: Session) -> list[dict[str, Any]]:
        if empty:
            return []
        rows = service.list_assignments(
            session,
            user_id=user_id,
            project_id=query.get("scope.project.id"),
            role_id=query.get("role.id"),
            effective="effective" in query and _flag(query["effective"]),
        )
        return [views.assignment_view(row, v3, names=names) for row in rows]

    document = views.collection("role_assignments", await _run(request, work), str(request.url))
    return _json(document)


def routes() -> list[BaseRoute]:
    grant = "/v3/projects/{project_id}/users/{user_id}/roles/{role_id}"
    return [
        Route("/v3/auth/projects", auth_projects, methods=["GET"]),
        Route("/v3/auth/domains", auth_domains, methods=["GET"]),
        Route("/v3/domains", list_domains, methods=["GET"]),
        Route("/v3/domains/{domain_id}", show_domain, methods=["GET"]),
        Route("/v3/projects", list_projects, methods=["GET"]),
        Route("/v3/projects", create_project, methods=["POST"]),
        Route("/v3/projects/{project_id}", show_project, methods=["GET"]),
        Route("/v3/projects/{project_id}", update_project, methods=["PATCH"]),
        Route("/v3/projects/{project_id}", delete_project, methods=["DELETE"]),
        Route("/v3/projects/{project_id}/users/{user_id}/roles", list_grants, methods=["GET"]),
        Route(grant, grant_role, methods=["PUT"]),
        Route(grant, check_grant, methods=["GET", "HEAD"]),
        Route(grant, revoke_grant, methods=["DELETE"]),
        Route("/v3/users", list_users, methods=["GET"]),
        Route("/v3/users", create_user, methods=["POST"]),
        Route("/v3/users/{user_id}", show_user, methods=["GET"]),
        Route("/v3/users/{user_id}", update_user, methods=["PATCH"]),
        Route("/v3/users/{user_id}", delete_user, methods=["DELETE"]),
        Route("/v3/users/{user_id}/password", change_password, methods=["POST"]),
        Route("/v3/users/{user_id}/projects", list_user_projects, methods=["GET"]),
        Route("/v3/roles", list_roles, methods=["GET"]),
        Route("/v3/roles", create_role, methods=["POST"]),
        Route("/v3/roles/{role_id}", show_role, methods=["GET"]),
        Route("/v3/roles/{role_id}", delete_role, methods=["DELETE"]),
        Route("/v3/role_assignments", list_role_assignments, methods=["GET"]),
    ]
