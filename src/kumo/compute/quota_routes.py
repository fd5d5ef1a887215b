"""Routes for os-quota-sets and GET /limits (the rules are in `kumo.compute.quotas`)."""

from __future__ import annotations

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumo.api.context import RequestContext
from kumo.api.http import read_json
from kumo.api.parts import in_session, runtime_from
from kumo.compute import quotas
from kumo.compute.microversion import version_of


async def show_quota_set(request: Request) -> Response:
    mv, quota = version_of(request), runtime_from(request).settings.quota
    project, path = request.path_params["project_id"], request.url.path
    user = request.query_params.get("user_id")
    detail, default = path.endswith("/detail"), path.endswith("/defaults")
    shown = await in_session(request, lambda s, c: quotas.quota_set(
        s, quota, c, project, user, mv, detail=detail, default=default))
    return JSONResponse({"quota_set": shown})


async def update_quota_set(request: Request) -> Response:
    body, mv = await read_json(request), version_of(request)
    quota, project = runtime_from(request).settings.quota, request.path_params["project_id"]
    user = request.query_params.get("user_id")
    shown = await in_session(request, lambda s, c: quotas.update_quota_set(
        s, quota, c, project, user, body, mv))
    return JSONResponse({"quota_set": shown})


async def delete_quota_set(request: Request) -> Response:
    project, user = request.path_params["project_id"], request.query_params.get("user_id")
    await in_session(request, lambda s, c: quotas.delete_quota_set(s, c, project, user))
    return Response(status_code=202)


async def show_limits(request: Request) -> Response:
    mv, quota = version_of(request), runtime_from(request).settings.quota
    wanted = request.query_params.get("tenant_id")

    def work(session: Session, context: RequestContext) -> dict[str, int]:
        project = context.project_id
        if wanted and wanted != project:
            context.require_admin()
            project = wanted
        return quotas.absolute_limits(session, quota, project, mv)

    absolute = await in_session(request, work)
    return JSONResponse({"limits": {"rate": [], "absolute": absolute}})


def routes(prefix: str) -> list[Route]:
    q = prefix + "/os-quota-sets/{project_id}"
    return [
        Route(prefix + "/limits", show_limits),
        Route(q, show_quota_set), Route(q + "/detail", show_quota_set),
        Route(q + "/defaults", show_quota_set),
        Route(q, update_quota_set, methods=["PUT"]),
        Route(q, delete_quota_set, methods=["DELETE"]),
    ]
