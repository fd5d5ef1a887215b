"""Keystone v3 routes: discovery and tokens. Project, user and role routes: `admin_routes`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumo.api.context import RequestContext
from kumo.api.errors import Flavor
from kumo.api.http import read_json
from kumo.api.parts import part_app, runtime_from
from kumo.db.engine import session_scope
from kumo.errors import Forbidden, NotFound, Unauthorized
from kumo.identity import views
from kumo.identity.auth import authenticate
from kumo.identity.catalog import catalog
from kumo.identity.models import ApplicationCredential, Project, Role, User
from kumo.identity.passwords import run_login
from kumo.identity.policy import caller
from kumo.identity.tokens import (
    Scope,
    TokenData,
    context_for,
    revoke,
    scope_role_names,
    token_role_names,
)
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


def token_body(runtime: Runtime, session: Any, data: TokenData,
               names: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Keystone's token document: user, methods, times, and by scope its roles and catalog.

    `names`: the token's role names when the caller has just worked them out.
    """
    user = session.get(User, data.user_id)
    token: dict[str, Any] = {
        "methods": list(data.methods),
        "user": {
            "id": user.id,
            "name": user.name,
            "domain": views.domain_ref(session, user.domain_id),
            "password_expires_at": None,
        },
        "audit_ids": [data.token_id[:22]],
        "issued_at": iso(data.issued_at),
        "expires_at": iso(data.expires_at),
    }
    if data.scope.unscoped:
        return {"token": token}  # no roles, no catalog: Keystone's unscoped token
    if names is None:
        names = token_role_names(session, data)
    token["roles"] = [{"id": role_id, "name": name} for role_id, name in session.execute(
        select(Role.id, Role.name).where(Role.name.in_(names)).order_by(Role.name))]
    if data.project_id is not None:
        project = session.get(Project, data.project_id)
        token["project"] = {"id": project.id, "name": project.name,
                            "domain": views.domain_ref(session, project.domain_id)}
        token["is_domain"] = False
    elif data.domain_id is not None:
        token["domain"] = views.domain_ref(session, data.domain_id)
    else:
        token["system"] = {"all": True}
    if data.app_cred_id is not None:
        credential = session.get(ApplicationCredential, data.app_cred_id)
        token["application_credential"] = {
            "id": credential.id, "name": credential.name,
            "restricted": not credential.unrestricted}
    token["catalog"] = catalog(runtime, session)
    return {"token": token}


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


def _subject_data(session: Any, me: RequestContext,
                  subject: str) -> tuple[RequestContext, TokenData]:
    """The subject token's context and content; 404 if it is not valid (as Keystone answers).

    Keystone's policy: the admin may look at any token, anyone else at their own.
    """
    try:
        context, data = context_for(session, subject)
    except Unauthorized as exc:
        raise NotFound(f"Could not find token: {exc.message}") from None
    if not me.is_admin and data.user_id != me.user_id:
        raise Forbidden("You are not authorized to perform the requested action: "
                        "identity:validate_token.")
    return context, data


async def check_token(request: Request) -> Response:
    """GET/HEAD: validate X-Subject-Token (the caller must be authenticated too)."""
    me = caller(request)
    runtime = runtime_from(request)
    subject = _subject(request)

    def work() -> dict[str, Any]:
        with session_scope(runtime.sessions) as session:
            context, data = _subject_data(session, me, subject)
            return token_body(runtime, session, data, context.roles)

    document = await run_in_threadpool(work)
    headers = {"X-Subject-Token": subject}
    if request.method == "HEAD":
        return Response(status_code=200, headers=headers)
    return JSONResponse(document, headers=headers)


async def revoke_token(request: Request) -> Response:
    me = caller(request)
    runtime = runtime_from(request)
    subject = _subject(request)

    def work() -> None:
        with session_scope(runtime.sessions) as session:
            revoke(session, _subject_data(session, me, subject)[1])

    await run_in_threadpool(work)
    return Response(status_code=204)


async def auth_catalog(request: Request) -> Response:
    context = caller(request)
    if not (context.project_id or context.scope_domain_id or context.system_scope):
        raise Forbidden("An unscoped token has no catalog: scope it to a project first.")
    runtime = runtime_from(request)

    def work() -> list[dict[str, Any]]:
        with session_scope(runtime.sessions) as session:
            return catalog(runtime, session)

    return JSONResponse({"catalog": await run_in_threadpool(work),
                         "links": {"self": str(request.url)}})


async def auth_system(request: Request) -> Response:
    """The system scopes the caller may ask for: `all` when they hold a role on it."""
    context = caller(request)
    runtime = runtime_from(request)

    def work() -> bool:
        with session_scope(runtime.sessions) as session:
            return bool(scope_role_names(session, context.user_id, Scope(system=True)))

    system = [{"all": True}] if await run_in_threadpool(work) else []
    return JSONResponse({"system": system, "links": {"self": str(request.url)}})


def routes() -> list[BaseRoute]:
    return [
        Route("/", versions, methods=["GET"]),
        Route("/v3", v3_root, methods=["GET"]),
        Route("/v3/", v3_root, methods=["GET"]),
        Route("/v3/auth/tokens", issue_token, methods=["POST"]),
        Route("/v3/auth/tokens", check_token, methods=["GET", "HEAD"]),
        Route("/v3/auth/tokens", revoke_token, methods=["DELETE"]),
        Route("/v3/auth/catalog", auth_catalog, methods=["GET"]),
        Route("/v3/auth/system", auth_system, methods=["GET"]),
    ]


def build_app(runtime: Runtime) -> Starlette:
    from kumo.identity import (
        admin_routes,
        catalog_routes,
        credential_routes,
        domain_routes,
        grant_routes,
        inference,
        policy_blobs,
    )

    every = (routes() + admin_routes.routes() + domain_routes.routes() + grant_routes.routes()
             + credential_routes.routes() + catalog_routes.routes() + inference.routes()
             + policy_blobs.routes())
    return part_app(runtime, every, Flavor.IDENTITY)
