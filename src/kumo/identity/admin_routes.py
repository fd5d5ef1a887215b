"""Keystone v3 projects (and their tags), users and roles over HTTP.

Thin handlers: check the caller (`kumo.identity.policy`), parse, call
`kumo.identity.service`, shape with `kumo.identity.views`. Domains and groups:
`domain_routes`; role assignments: `grant_routes`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kumo.api.http import read_json
from kumo.errors import BadRequest, NotFound
from kumo.identity import domains, schema, service, views
from kumo.identity.models import Domain, Project
from kumo.identity.policy import admin, as_json, caller, deny, flag, run, self_or_admin, v3_url


def filters_of(request: Request) -> dict[str, Any]:
    query = request.query_params
    filters: dict[str, Any] = {}
    for key in ("name", "domain_id", "parent_id"):
        if key in query:
            filters[key] = query[key]
    if "enabled" in query:
        filters["enabled"] = flag(query["enabled"])
    for key in ("tags", "tags-any", "not-tags", "not-tags-any"):
        if key in query:
            filters[key] = [tag for tag in query[key].split(",") if tag]
    return filters


# ---- projects -------------------------------------------------------------------------


async def list_projects(request: Request) -> Response:
    """All projects for the admin; for anyone else only the projects they have a role on.

    (Keystone refuses non-admins here with 403 and `openstack project list` then
    falls back to /users/{me}/projects; showing them their own is kinder and lets
    `openstack project show NAME` work for a member.)
    """
    context = caller(request)
    filters, v3 = filters_of(request), v3_url(request)
    # is_domain=true lists the domains, as Keystone's projects acting as domains.
    as_domains = "is_domain" in request.query_params and flag(request.query_params["is_domain"])

    def work(session: Session) -> list[dict[str, Any]]:
        if as_domains:
            listed = domains.list_domains(session, filters)
            if not context.is_admin:
                listed = [d for d in listed if d.id == context.domain_id]
            return [views.domain_as_project_view(d, v3) for d in listed]
        found = service.list_projects(session, filters)
        if not context.is_admin:
            own = {p.id for p in service.user_projects(session, context.user_id)}
            found = [p for p in found if p.id in own]
        return [views.project_view(p, v3) for p in found]

    return as_json(views.collection("projects", await run(request, work), str(request.url)))


async def create_project(request: Request) -> Response:
    admin(request, "create_project")
    body = schema.object_under(await read_json(request), "project")
    v3 = v3_url(request)
    if body.get("is_domain") is True:
        domain_body = {k: v for k, v in body.items()
                       if k not in ("is_domain", "domain_id", "parent_id")}
        if body.get("domain_id") or body.get("parent_id"):
            raise BadRequest("Invalid input: a project acting as a domain has no domain or "
                             "parent.")
        domain_fields = schema.domain_fields(domain_body, creating=True)

        def make_domain(session: Session) -> dict[str, Any]:
            created = domains.create_domain(session, domain_fields)
            return views.domain_as_project_view(created, v3)

        return as_json({"project": await run(request, make_domain)}, 201)
    fields = schema.project_fields(body, creating=True)

    def work(session: Session) -> dict[str, Any]:
        return views.project_view(service.create_project(session, fields), v3)

    return as_json({"project": await run(request, work)}, 201)


async def show_project(request: Request) -> Response:
    context = caller(request)
    project_id, v3 = request.path_params["project_id"], v3_url(request)

    def work(session: Session) -> dict[str, Any]:
        as_domain = _domain_acting_as_project(session, project_id)
        if as_domain is not None:
            if not context.is_admin and context.domain_id != as_domain.id:
                raise deny("get_project")
            return views.domain_as_project_view(as_domain, v3)
        project = service.get_project(session, project_id)
        if not context.is_admin and project_id not in {
            p.id for p in service.user_projects(session, context.user_id)
        }:
            raise deny("get_project")
        return views.project_view(project, v3)

    return as_json({"project": await run(request, work)})


async def update_project(request: Request) -> Response:
    admin(request, "update_project")
    project_id = request.path_params["project_id"]
    body = schema.for_update(schema.object_under(await read_json(request), "project"), project_id)
    fields, v3 = schema.project_fields(body, creating=False), v3_url(request)

    def work(session: Session) -> dict[str, Any]:
        if _domain_acting_as_project(session, project_id) is not None:
            changes = {k: v for k, v in fields.items() if k != "extra"}
            updated = domains.update_domain(session, project_id, changes)
            return views.domain_as_project_view(updated, v3)
        return views.project_view(service.update_project(session, project_id, fields), v3)

    return as_json({"project": await run(request, work)})


async def delete_project(request: Request) -> Response:
    admin(request, "delete_project")
    project_id = request.path_params["project_id"]

    def work(session: Session) -> None:
        if _domain_acting_as_project(session, project_id) is not None:
            domains.delete_domain(session, project_id)
        else:
            service.delete_project(session, project_id)

    await run(request, work)
    return Response(status_code=204)


def _domain_acting_as_project(session: Session, project_id: str) -> Domain | None:
    """The domain with this id, when a projects URL names a domain (is_domain projects)."""
    if session.get(Project, project_id) is not None:
        return None
    return session.get(Domain, project_id)


async def _projects_of(request: Request, user_id: str) -> Response:
    v3 = v3_url(request)

    def work(session: Session) -> list[dict[str, Any]]:
        return [views.project_view(p, v3) for p in service.user_projects(session, user_id)]

    return as_json(views.collection("projects", await run(request, work), str(request.url)))


async def list_user_projects(request: Request) -> Response:
    user_id = request.path_params["user_id"]
    self_or_admin(request, user_id, "list_user_projects")
    return await _projects_of(request, user_id)


async def auth_projects(request: Request) -> Response:
    return await _projects_of(request, caller(request).user_id)


# ---- project tags ---------------------------------------------------------------------


async def project_tags(request: Request) -> Response:
    """GET the tags, PUT a new list (replaces all), DELETE them all."""
    project_id = request.path_params["project_id"]
    if request.method == "GET":
        context = caller(request)

        def read(session: Session) -> list[str]:
            if not context.is_admin and project_id not in {
                p.id for p in service.user_projects(session, context.user_id)
            }:
                raise deny("get_project_tags")
            return list(service.get_project(session, project_id).tags or ())

        return as_json({"tags": await run(request, read),
                        "links": {"self": str(request.url), "previous": None, "next": None}})
    admin(request, "update_project_tags")
    tags = schema.tags_value(await read_json(request)) if request.method == "PUT" else []

    def write(session: Session) -> list[str]:
        return list(service.update_project(session, project_id, {"tags": tags}).tags)

    written = await run(request, write)
    if request.method == "DELETE":
        return Response(status_code=204)
    return as_json({"tags": written, "links": {"self": str(request.url)}})


async def project_tag(request: Request) -> Response:
    """HEAD/GET (is it there: 204/404), PUT (add: 201), DELETE (remove: 204/404) one tag."""
    project_id, tag = request.path_params["project_id"], request.path_params["tag"]
    if request.method in ("GET", "HEAD"):
        caller(request)

        def check(session: Session) -> bool:
            return tag in (service.get_project(session, project_id).tags or ())

        if not await run(request, check):
            raise NotFound(f"Could not find tag: {tag}.")
        return Response(status_code=204)
    admin(request, "update_project_tags")
    value = schema.tag_value(tag)

    def change(session: Session) -> None:
        tags = list(service.get_project(session, project_id).tags or ())
        if request.method == "PUT":
            tags = schema.tags_value({"tags": [*tags, value]})
        elif value not in tags:
            raise NotFound(f"Could not find tag: {value}.")
        else:
            tags.remove(value)
        service.update_project(session, project_id, {"tags": tags})

    await run(request, change)
    if request.method == "PUT":
        return Response(status_code=201, headers={"Location": str(request.url)})
    return Response(status_code=204)


# ---- users ----------------------------------------------------------------------------


async def list_users(request: Request) -> Response:
    """All users for the admin; anyone else sees only themselves."""
    context = caller(request)
    filters, v3 = filters_of(request), v3_url(request)

    def work(session: Session) -> list[dict[str, Any]]:
        found = service.list_users(session, filters)
        if not context.is_admin:
            found = [u for u in found if u.id == context.user_id]
        return [views.user_view(u, v3) for u in found]

    return as_json(views.collection("users", await run(request, work), str(request.url)))


async def create_user(request: Request) -> Response:
    admin(request, "create_user")
    body = schema.object_under(await read_json(request), "user")
    fields, v3 = schema.user_fields(body, creating=True), v3_url(request)

    def work(session: Session) -> dict[str, Any]:
        return views.user_view(service.create_user(session, fields), v3)

    return as_json({"user": await run(request, work)}, 201)


async def show_user(request: Request) -> Response:
    user_id, v3 = request.path_params["user_id"], v3_url(request)
    self_or_admin(request, user_id, "get_user")

    def work(session: Session) -> dict[str, Any]:
        return views.user_view(service.get_user(session, user_id), v3)

    return as_json({"user": await run(request, work)})


async def update_user(request: Request) -> Response:
    admin(request, "update_user")
    user_id = request.path_params["user_id"]
    body = schema.for_update(schema.object_under(await read_json(request), "user"), user_id)
    fields, v3 = schema.user_fields(body, creating=False), v3_url(request)

    def work(session: Session) -> dict[str, Any]:
        return views.user_view(service.update_user(session, user_id, fields), v3)

    return as_json({"user": await run(request, work)})


async def delete_user(request: Request) -> Response:
    admin(request, "delete_user")
    user_id = request.path_params["user_id"]
    await run(request, lambda session: service.delete_user(session, user_id))
    return Response(status_code=204)


async def change_password(request: Request) -> Response:
    """`openstack user password set`: a user changes their own password."""
    user_id = request.path_params["user_id"]
    self_or_admin(request, user_id, "change_password")  # the original password is checked too
    body = schema.object_under(await read_json(request), "user")
    original = schema.password_value(body, "original_password")
    password = schema.password_value(body)
    await run(request, lambda s: service.change_password(s, user_id, original, password))
    return Response(status_code=204)


# ---- roles ----------------------------------------------------------------------------


async def list_roles(request: Request) -> Response:
    caller(request)
    name, v3 = request.query_params.get("name"), v3_url(request)
    if request.query_params.get("domain_id"):
        return as_json(views.collection("roles", [], str(request.url)))  # no domain roles

    def work(session: Session) -> list[dict[str, Any]]:
        return [views.role_view(r, v3) for r in service.list_roles(session, name)]

    return as_json(views.collection("roles", await run(request, work), str(request.url)))


async def show_role(request: Request) -> Response:
    caller(request)
    role_id, v3 = request.path_params["role_id"], v3_url(request)

    def work(session: Session) -> dict[str, Any]:
        return views.role_view(service.get_role(session, role_id), v3)

    return as_json({"role": await run(request, work)})


async def create_role(request: Request) -> Response:
    admin(request, "create_role")
    body = schema.object_under(await read_json(request), "role")
    fields, v3 = schema.role_fields(body), v3_url(request)

    def work(session: Session) -> dict[str, Any]:
        return views.role_view(service.create_role(session, fields), v3)

    return as_json({"role": await run(request, work)}, 201)


async def update_role(request: Request) -> Response:
    admin(request, "update_role")
    body = schema.object_under(await read_json(request), "role")
    fields, v3 = schema.role_fields(body, creating=False), v3_url(request)
    role_id = request.path_params["role_id"]

    def work(session: Session) -> dict[str, Any]:
        return views.role_view(service.update_role(session, role_id, fields), v3)

    return as_json({"role": await run(request, work)})


async def delete_role(request: Request) -> Response:
    admin(request, "delete_role")
    role_id = request.path_params["role_id"]
    await run(request, lambda session: service.delete_role(session, role_id))
    return Response(status_code=204)


def routes() -> list[BaseRoute]:
    return [
        Route("/v3/auth/projects", auth_projects, methods=["GET"]),
        Route("/v3/projects", list_projects, methods=["GET"]),
        Route("/v3/projects", create_project, methods=["POST"]),
        Route("/v3/projects/{project_id}", show_project, methods=["GET"]),
        Route("/v3/projects/{project_id}", update_project, methods=["PATCH"]),
        Route("/v3/projects/{project_id}", delete_project, methods=["DELETE"]),
        Route("/v3/projects/{project_id}/tags", project_tags, methods=["GET", "PUT", "DELETE"]),
        Route("/v3/projects/{project_id}/tags/{tag}", project_tag,
              methods=["GET", "HEAD", "PUT", "DELETE"]),
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
        Route("/v3/roles/{role_id}", update_role, methods=["PATCH"]),
        Route("/v3/roles/{role_id}", delete_role, methods=["DELETE"]),
    ]

