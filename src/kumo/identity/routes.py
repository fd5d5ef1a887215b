"""Keystone v3 routes: discovery and tokens. Project, user and role routes: `admin_routes`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumo.api.context import RequestContext, context_of
from kumo.api.errors import Flavor
from kumo.api.http import read_json
from kumo.api.parts import part_app, runtime_from
from kumo.db.engine import session_scope
from kumo.errors import Forbidden, NotFound, Unauthorized
from kumo.identity.auth import DEFAULT_DOMAIN, authenticate
from kumo.identity.catalog import catalog
from kumo.identity.models import Project, Role, User
from kumo.identity.passwords import run_login
from kumo.identity.tokens import TokenData, context_for, revoke
from kumo.runtime import Runtime

V3_MEDIA = [{"base": "application/json", "type": "application/vnd.openstack.identity-v3+json"}]


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000000Z")


def version_document(request: Request) -> dict[str, Any]:
    runtime = runtime_from(request)
    return {
        "id": "v3.14",
        "status": "stable",
        "updated": "2020-04-07T00:00:00Z",
        "links": [{"rel": "self", "href": f"{runtime.settings.base_url}/identity/v3/"}],
        "media-types": V3_MEDIA,
    }


async def versions(request: Request) -> Response:
    return JSONResponse({"versions": {"values": [version_document(request)]}}, status_code=300)


async def v3_root(request: Request) -> Response:
    return JSONResponse({"version": version_document(request)})


def token_body(runtime: Runtime, session: Any, data: TokenData) -> dict[str, Any]:
    user = session.get(User, data.user_id)
    project = session.get(Project, data.project_id)
    from kumo.identity.tokens import role_names

    names = role_names(session, data.user_id, data.project_id)
    roles = [{"id": role.id, "name": role.name} for role in session.query(Role).all()
             if role.name in names]
    return {
        "token": {
            "methods": list(data.methods),
            "user": {
                "id": user.id,
                "name": user.name,
                "domain": DEFAULT_DOMAIN,
                "password_expires_at": None,
            },
            "project": {"id": project.id, "name": project.name, "domain": DEFAULT_DOMAIN},
            "is_domain": False,
            "roles": roles,
            "audit_ids": [data.token_id[:22]],
            "issued_at": iso(data.issued_at),
            "expires_at": iso(data.expires_at),
            "catalog": catalog(runtime),
        }
    }


async def issue_token(request: Request) -> Response:
    runtime = runtime_from(request)
    body = await read_json(request)

    def work() -> tuple[str, dict[str, Any]]:
        with session_scope(runtime.sessions) as session:
            token, data = authenticate(session, body)
            return token, token_body(runtime, session, data)

    # A password check costs a bcrypt hash: on the login threads, not the shared pool.
    token, document = await run_login(work)
    return JSONResponse(document, status_code=201, headers={"X-Subject-Token": token})


def _subject(request: Request) -> str:
    subject = request.headers.get("x-subject-token")
    if not subject:
        raise NotFound("X-Subject-Token header is required")
    return subject


def _subject_data(session: Any, caller: RequestContext, subject: str) -> TokenData:
    """The subject token's content; 404 if it is not valid (as Keystone answers).

    Keystone's policy: the admin may look at any token, anyone else at their own.
    """
    try:
        _, data = context_for(session, subject)
    except Unauthorized as exc:
        raise NotFound(f"Could not find token: {exc.message}") from None
    if not caller.is_admin and data.user_id != caller.user_id:
        raise Forbidden("You are not authorized to perform the requested action: "
                        "identity:validate_token.")
    return data


async def check_token(request: Request) -> Response:
    """GET/HEAD: validate X-Subject-Token (the caller must be authenticated too)."""
    caller = context_of(request)
    runtime = runtime_from(request)
    subject = _subject(request)

    def work() -> dict[str, Any]:
        with session_scope(runtime.sessions) as session:
            data = _subject_data(session, caller, subject)
            return token_body(runtime, session, data)

    document = await run_in_threadpool(work)
    headers = {"X-Subject-Token": subject}
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers)
    return JSONResponse(document, headers=headers)


async def revoke_token(request: Request) -> Response:
    caller = context_of(request)
    runtime = runtime_from(request)
    subject = _subject(request)

    def work() -> None:
        with session_scope(runtime.sessions) as session:
            revoke(session, _subject_data(session, caller, subject))

    await run_in_threadpool(work)
    return Response(status_code=204)


async def auth_catalog(request: Request) -> Response:
    context_of(request)
    runtime = runtime_from(request)
    return JSONResponse({"catalog": catalog(runtime), "links": {"self": str(request.url)}})


def routes() -> list[BaseRoute]:
    return [
        Route("/", versions, methods=["GET"]),
        Route("/v3", v3_root, methods=["GET"]),
        Route("/v3/", v3_root, methods=["GET"]),
        Route("/v3/auth/tokens", issue_token, methods=["POST"]),
        Route("/v3/auth/tokens", check_token, methods=["GET", "HEAD"]),
        Route("/v3/auth/tokens", revoke_token, methods=["DELETE"]),
        Route("/v3/auth/catalog", auth_catalog, methods=["GET"]),
    ]


def build_app(runtime: Runtime) -> Starlette:
    from kumo.identity import admin_routes

    return part_app(runtime, routes() + admin_routes.routes(), Flavor.IDENTITY)
