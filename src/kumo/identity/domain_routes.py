"""Keystone v3 domains and groups (with their members) over HTTP."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kumo.api.http import read_json
from kumo.errors import NotFound
from kumo.identity import domains, groups, schema, views
from kumo.identity.admin_routes import filters_of
from kumo.identity.models import Domain, RoleAssignment
from kumo.identity.policy import admin, as_json, caller, deny, run, self_or_admin, v3_url
from kumo.identity.tokens import group_ids_of

# ---- domains --------------------------------------------------------------------------


def _visible_domain_ids(session: Session, user_id: str, own_domain: str) -> set[str]:
    """A non-admin sees their own domain and the domains they hold a role on."""
    actor = RoleAssignment.user_id == user_id
    member_of = group_ids_of(session, user_id)
    if member_of:
        actor = actor | RoleAssignment.group_id.in_(member_of)
    rows = session.scalars(select(RoleAssignment.domain_id).where(
        actor, RoleAssignment.domain_id.is_not(None)))
    return {own_domain, *(d for d in rows if d)}


async def list_domains(request: Request) -> Response:
    context = caller(request)
    filters, v3 = filters_of(request), v3_url(request)

    def work(session: Session) -> list[dict[str, Any]]:
        found = domains.list_domains(session, filters)
        if not context.is_admin:
            visible = _visible_domain_ids(session, context.user_id, context.domain_id)
            found = [d for d in found if d.id in visible]
        return [views.domain_view(d, v3) for d in found]

    return as_json(views.collection("domains", await run(request, work), str(request.url)))


async def auth_domains(request: Request) -> Response:
    """The domains the caller may scope a token to (a role on it, direct or by group)."""
    context = caller(request)
    v3 = v3_url(request)

    def work(session: Session) -> list[dict[str, Any]]:
        ids = _visible_domain_ids(session, context.user_id, "") - {""}
        found = session.scalars(select(Domain).where(Domain.id.in_(ids), Domain.enabled.is_(True))
                                .order_by(Domain.name))
        return [views.domain_view(d, v3) for d in found]

    return as_json(views.collection("domains", await run(request, work), str(request.url)))


async def create_domain(request: Request) -> Response:
    admin(request, "create_domain")
    body = schema.object_under(await read_json(request), "domain")
    fields, v3 = schema.domain_fields(body, creating=True), v3_url(request)

    def work(session: Session) -> dict[str, Any]:
        return views.domain_view(domains.create_domain(session, fields), v3)

    return as_json({"domain": await run(request, work)}, 201)


async def show_domain(request: Request) -> Response:
    context = caller(request)
    domain_id, v3 = request.path_params["domain_id"], v3_url(request)

    def work(session: Session) -> dict[str, Any]:
        domain = domains.get_domain(session, domain_id)
        if not context.is_admin and domain_id not in _visible_domain_ids(
                session, context.user_id, context.domain_id):
            raise deny("get_domain")
        return views.domain_view(domain, v3)

    return as_json({"domain": await run(request, work)})


async def update_domain(request: Request) -> Response:
    admin(request, "update_domain")
    body = schema.object_under(await read_json(request), "domain")
    fields, v3 = schema.domain_fields(body, creating=False), v3_url(request)
    domain_id = request.path_params["domain_id"]

    def work(session: Session) -> dict[str, Any]:
        return views.domain_view(domains.update_domain(session, domain_id, fields), v3)

    return as_json({"domain": await run(request, work)})


async def delete_domain(request: Request) -> Response:
    admin(request, "delete_domain")
    domain_id = request.path_params["domain_id"]
    await run(request, lambda session: domains.delete_domain(session, domain_id))
    return Response(status_code=204)


# ---- groups ---------------------------------------------------------------------------


async def list_groups(request: Request) -> Response:
    admin(request, "list_groups")
    filters, v3 = filters_of(request), v3_url(request)

    def work(session: Session) -> list[dict[str, Any]]:
        return [views.group_view(g, v3) for g in groups.list_groups(session, filters)]

    return as_json(views.collection("groups", await run(request, work), str(request.url)))


async def create_group(request: Request) -> Response:
    admin(request, "create_group")
    body = schema.object_under(await read_json(request), "group")
    fields, v3 = schema.group_fields(body, creating=True), v3_url(request)

    def work(session: Session) -> dict[str, Any]:
        return views.group_view(groups.create_group(session, fields), v3)

    return as_json({"group": await run(request, work)}, 201)


async def show_group(request: Request) -> Response:
    admin(request, "get_group")
    group_id, v3 = request.path_params["group_id"], v3_url(request)

    def work(session: Session) -> dict[str, Any]:
        return views.group_view(groups.get_group(session, group_id), v3)

    return as_json({"group": await run(request, work)})


async def update_group(request: Request) -> Response:
    admin(request, "update_group")
    body = schema.object_under(await read_json(request), "group")
    fields, v3 = schema.group_fields(body, creating=False), v3_url(request)
    group_id = request.path_params["group_id"]

    def work(session: Session) -> dict[str, Any]:
        return views.group_view(groups.update_group(session, group_id, fields), v3)

    return as_json({"group": await run(request, work)})


async def delete_group(request: Request) -> Response:
    admin(request, "delete_group")
    group_id = request.path_params["group_id"]
    await run(request, lambda session: groups.delete_group(session, group_id))
    return Response(status_code=204)


async def group_users(request: Request) -> Response:
    admin(request, "list_users_in_group")
    group_id, v3 = request.path_params["group_id"], v3_url(request)

    def work(session: Session) -> list[dict[str, Any]]:
        return [views.user_view(u, v3) for u in groups.members(session, group_id)]

    return as_json(views.collection("users", await run(request, work), str(request.url)))


async def group_user(request: Request) -> Response:
    """PUT adds, HEAD/GET checks, DELETE removes a user's membership (204 / 404)."""
    group_id, user_id = request.path_params["group_id"], request.path_params["user_id"]
    if request.method == "PUT":
        admin(request, "add_user_to_group")
        await run(request, lambda s: groups.add_member(s, group_id, user_id))
    elif request.method == "DELETE":
        admin(request, "remove_user_from_group")
        await run(request, lambda s: groups.remove_member(s, group_id, user_id))
    else:
        self_or_admin(request, user_id, "check_user_in_group")
        if not await run(request, lambda s: groups.is_member(s, group_id, user_id)):
            raise NotFound(f"User {user_id} is not a member of group {group_id}.")
    return Response(status_code=204)


async def user_groups(request: Request) -> Response:
    user_id, v3 = request.path_params["user_id"], v3_url(request)
    self_or_admin(request, user_id, "list_groups_for_user")

    def work(session: Session) -> list[dict[str, Any]]:
        return [views.group_view(g, v3) for g in groups.groups_of(session, user_id)]

    return as_json(views.collection("groups", await run(request, work), str(request.url)))


def routes() -> list[BaseRoute]:
    return [
        Route("/v3/auth/domains", auth_domains, methods=["GET"]),
        Route("/v3/domains", list_domains, methods=["GET"]),
        Route("/v3/domains", create_domain, methods=["POST"]),
        Route("/v3/domains/{domain_id}", show_domain, methods=["GET"]),
        Route("/v3/domains/{domain_id}", update_domain, methods=["PATCH"]),
        Route("/v3/domains/{domain_id}", delete_domain, methods=["DELETE"]),
        Route("/v3/groups", list_groups, methods=["GET"]),
        Route("/v3/groups", create_group, methods=["POST"]),
        Route("/v3/groups/{group_id}", show_group, methods=["GET"]),
        Route("/v3/groups/{group_id}", update_group, methods=["PATCH"]),
        Route("/v3/groups/{group_id}", delete_group, methods=["DELETE"]),
        Route("/v3/groups/{group_id}/users", group_users, methods=["GET"]),
        Route("/v3/groups/{group_id}/users/{user_id}", group_user,
              methods=["PUT", "HEAD", "GET", "DELETE"]),
        Route("/v3/users/{user_id}/groups", user_groups, methods=["GET"]),
    ]
