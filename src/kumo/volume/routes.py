"""Cinder v3 routes (the subset the `openstack` CLI and openstacksdk call), under /volume.

The catalog names `.../volume/v3`; URLs with a project id (`/v3/{project_id}/...`,
what older clients build) reach the same handlers, as in Cinder, where the project id
became optional in 3.67. Errors have nova's shape (`{"itemNotFound": {...}}`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from kumo.api.context import RequestContext
from kumo.api.errors import Flavor, render
from kumo.api.http import read_json
from kumo.api.parts import in_session, part_app, runtime_from
from kumo.errors import BadRequest, NotFound
from kumo.runtime import Runtime
from kumo.volume import metadata, quotas, snapshots, views, volumes
from kumo.volume.actions import boolean, volume_action
from kumo.volume.messages import list_messages
from kumo.volume.microversion import CINDER, MAX_VERSION, MIN_VERSION, version_of
from kumo.volume.models import DEFAULT_TYPE_ID, DEFAULT_TYPE_NAME, Volume, VolumeAttachment
from kumo.volume.service import volume_service_of
from kumo.volume.volumes import attachments_of

COLLECTIONS = {"volumes", "snapshots", "types", "os-quota-sets", "limits", "extensions",
               "os-availability-zone", "attachments", "messages", "os-volume-transfer",
               "backups", "groups", "group_types", "qos-specs", "scheduler-stats"}


def base_url(request: Request) -> str:
    return f"{runtime_from(request).settings.base_url}/volume/v3"


def _version_document(request: Request) -> dict[str, Any]:
    root = f"{runtime_from(request).settings.base_url}/volume"
    return {"id": "v3.0", "status": "CURRENT", "version": f"{MAX_VERSION[0]}.{MAX_VERSION[1]}",
            "min_version": f"{MIN_VERSION[0]}.{MIN_VERSION[1]}",
            "updated": "2023-08-31T00:00:00Z",
            "links": [{"rel": "describedby", "type": "text/html",
                       "href": "https://docs.openstack.org/"},
                      {"rel": "self", "href": f"{root}/v3/"}],
            "media-types": [{"base": "application/json",
                             "type": "application/vnd.openstack.volume+json;version=3"}]}


async def all_versions(request: Request) -> Response:
    return JSONResponse({"versions": [_version_document(request)]}, status_code=300)


async def v3_versions(request: Request) -> Response:
    return JSONResponse({"versions": [_version_document(request)]})


# -- volumes -------------------------------------------------------------------------


def _shown(session: Session, context: RequestContext, request: Request,
           found: list[Volume], *, detail: bool = True) -> list[dict[str, Any]]:
    entries = attachments_of(session, [v.id for v in found]) if detail else {}
    mv, base = version_of(request), base_url(request)
    return [views.volume_view(v, entries.get(v.id, []), base, mv, context, detail=detail)
            for v in found]


async def list_volumes(request: Request) -> Response:
    detail = request.url.path.endswith("/detail")
    query = dict(request.query_params)
    with_count = boolean(query.get("with_count", "false"), "with_count")

    def work(session: Session, context: RequestContext) -> dict[str, Any]:
        found = volumes.list_volumes(session, context, query)
        body: dict[str, Any] = {"volumes": _shown(session, context, request, found,
                                                  detail=detail)}
        if with_count and version_of(request) >= (3, 45):
            counted = {k: v for k, v in query.items() if k not in ("limit", "marker", "offset")}
            body["count"] = len(volumes.list_volumes(session, context, counted))
        return body

    return JSONResponse(await in_session(request, work))


async def create_volume(request: Request) -> Response:
    body = await read_json(request)
    runtime = runtime_from(request)
    service = volume_service_of(runtime)

    def work(session: Session, context: RequestContext) -> tuple[dict[str, Any], Any]:
        volume, source = volumes.create_volume(session, context, runtime.settings, body,
                                               service.images)
        return _shown(session, context, request, [volume])[0], source

    shown, source = await in_session(request, work)
    service.submit_create(shown["id"], source)
    return JSONResponse({"volume": shown}, status_code=202)


async def show_volume(request: Request) -> Response:
    volume_id = request.path_params["id"]

    def work(session: Session, context: RequestContext) -> dict[str, Any]:
        return _shown(session, context, request, [volumes.get_volume(session, context,
                                                                     volume_id)])[0]

    return JSONResponse({"volume": await in_session(request, work)})


async def update_volume(request: Request) -> Response:
    body = await read_json(request)
    volume_id = request.path_params["id"]

    def work(session: Session, context: RequestContext) -> dict[str, Any]:
        volume = volumes.update_volume(session, context, volume_id, body)
        return _shown(session, context, request, [volume])[0]

    return JSONResponse({"volume": await in_session(request, work)})


async def delete_volume(request: Request) -> Response:
    volume_id = request.path_params["id"]
    cascade = boolean(request.query_params.get("cascade", "false"), "cascade")
    force = boolean(request.query_params.get("force", "false"), "force")
    if force and version_of(request) < (3, 23):
        raise BadRequest("Invalid input received: force delete needs microversion 3.23")
    service = volume_service_of(runtime_from(request))
    _, snapshot_ids = await in_session(request, lambda s, c: volumes.begin_delete(
        s, c, volume_id, cascade=cascade, force=force))
    service.submit_delete(volume_id, snapshot_ids)
    return Response(status_code=202)


async def action(request: Request) -> Response:
    return await volume_action(request, request.path_params["id"], await read_json(request))


async def volume_summary(request: Request) -> Response:
    def work(session: Session, context: RequestContext) -> dict[str, Any]:
        found = volumes.list_volumes(session, context, {
            k: v for k, v in request.query_params.items() if k in ("all_tenants",
                                                                    "project_id")})
        summary: dict[str, Any] = {"total_count": len(found),
                                   "total_size": sum(v.size for v in found)}
        if version_of(request) >= (3, 36):
            merged: dict[str, list[str]] = {}
            for volume in found:
                for key, value in (volume.meta or {}).items():
                    merged.setdefault(key, [])
                    if value not in merged[key]:
                        merged[key].append(value)
            summary["metadata"] = merged
        return {"volume-summary": summary}

    return JSONResponse(await in_session(request, work))


# -- metadata of volumes and snapshots -------------------------------------------------


def _record(request: Request) -> Any:
    is_volume = "/volumes/" in request.url.path
    record_id = request.path_params["id"]

    def find(session: Session, context: RequestContext) -> Any:
        if is_volume:
            return volumes.get_volume(session, context, record_id)
        return snapshots.get_snapshot(session, context, record_id)

    return find


async def metadata_all(request: Request) -> Response:
    body = await read_json(request) if request.method in ("POST", "PUT") else None
    find = _record(request)

    def work(session: Session, context: RequestContext) -> dict[str, str]:
        record = find(session, context)
        if body is None:
            return dict(record.meta or {})
        context.require_writer()
        return metadata.set_all(record, body, replace=request.method == "PUT")

    return JSONResponse({"metadata": await in_session(request, work)})


async def metadata_item(request: Request) -> Response:
    key = request.path_params["key"]
    body = await read_json(request) if request.method == "PUT" else None
    find = _record(request)

    def work(session: Session, context: RequestContext) -> dict[str, str] | None:
        record = find(session, context)
        if request.method == "GET":
            return metadata.get_item(record, key)
        context.require_writer()
        if request.method == "DELETE":
            metadata.delete_item(record, key)
            return None
        return metadata.set_item(record, key, body)

    shown = await in_session(request, work)
    if shown is None:
        return Response(status_code=200)
    return JSONResponse({"meta": shown})


# -- snapshots ---------------------------------------------------------------------------


async def list_snapshots(request: Request) -> Response:
    detail = request.url.path.endswith("/detail")
    query = dict(request.query_params)

    def work(session: Session, context: RequestContext) -> list[dict[str, Any]]:
        return [views.snapshot_view(s, version_of(request), detail=detail)
                for s in snapshots.list_snapshots(session, context, query)]

    return JSONResponse({"snapshots": await in_session(request, work)})


async def create_snapshot(request: Request) -> Response:
    body = await read_json(request)
    runtime = runtime_from(request)
    service = volume_service_of(runtime)

    def work(session: Session, context: RequestContext) -> tuple[dict[str, Any], str | None]:
        snapshot, server_id = snapshots.create_snapshot(session, context, runtime.settings,
                                                        body, version_of(request))
        return views.snapshot_view(snapshot, version_of(request)), server_id

    shown, server_id = await in_session(request, work)
    service.submit_snapshot(shown["id"], server_id)
    return JSONResponse({"snapshot": shown}, status_code=202)


async def show_snapshot(request: Request) -> Response:
    snapshot_id = request.path_params["id"]
    shown = await in_session(request, lambda s, c: views.snapshot_view(
        snapshots.get_snapshot(s, c, snapshot_id), version_of(request)))
    return JSONResponse({"snapshot": shown})


async def update_snapshot(request: Request) -> Response:
    body = await read_json(request)
    snapshot_id = request.path_params["id"]
    shown = await in_session(request, lambda s, c: views.snapshot_view(
        snapshots.update_snapshot(s, c, snapshot_id, body), version_of(request)))
    return JSONResponse({"snapshot": shown})


async def delete_snapshot(request: Request) -> Response:
    snapshot_id = request.path_params["id"]
    service = volume_service_of(runtime_from(request))
    dependents = service.driver.snapshot_has_dependents()
    await in_session(request, lambda s, c: snapshots.begin_delete(
        s, c, snapshot_id, has_dependents=dependents))
    service.submit_delete_snapshot(snapshot_id)
    return Response(status_code=202)


# -- types, zones, extensions, quotas, limits, attachments --------------------------------


async def list_types(request: Request) -> Response:
    await in_session(request, lambda s, c: None)
    return JSONResponse({"volume_types": [views.default_type(version_of(request))]})


async def show_type(request: Request) -> Response:
    wanted = request.path_params["id"]
    await in_session(request, lambda s, c: None)
    if wanted not in (DEFAULT_TYPE_ID, DEFAULT_TYPE_NAME, "default"):
        raise NotFound(f"Volume type {wanted} could not be found.")
    return JSONResponse({"volume_type": views.default_type(version_of(request))})


async def create_type(request: Request) -> Response:
    await in_session(request, lambda s, c: c.require_admin())
    raise BadRequest(f"kumo has one volume type, {DEFAULT_TYPE_NAME}, and its one driver "
                     f"({runtime_from(request).settings.volume.volume_driver}); no others can "
                     "be made")


async def availability_zones(request: Request) -> Response:
    await in_session(request, lambda s, c: None)
    return JSONResponse({"availabilityZoneInfo": [
        {"zoneName": "nova", "zoneState": {"available": True}}]})


_EXTENSIONS = (
    ("os-extended-snapshot-attributes", "ExtendedSnapshotAttributes",
     "Extended SnapshotAttributes support."),
    ("os-vol-tenant-attr", "VolumeTenantAttribute", "Expose the internal project_id."),
    ("os-volume-actions", "VolumeActions", "Enable volume actions."),
    ("os-quota-sets", "Quotas", "Quota management support."),
    ("os-availability-zone", "AvailabilityZones", "Describe Availability Zones."),
    ("os-vol-image-meta", "VolumeImageMetadata", "Show image metadata associated with "
                                                  "the volume."),
    ("os-used-limits", "UsedLimits", "Provide data on limited resources that are being used."),
)


async def extensions(request: Request) -> Response:
    await in_session(request, lambda s, c: None)
    return JSONResponse({"extensions": [
        {"alias": alias, "name": name, "description": text, "links": [],
         "updated": "2013-01-01T00:00:00+00:00"} for alias, name, text in _EXTENSIONS]})


def _project_allowed(context: RequestContext, project_id: str) -> None:
    if not (context.is_admin or project_id == context.project_id):
        raise NotFound(f"Project {project_id} could not be found (or is not yours).")


async def quota_set(request: Request) -> Response:
    project_id = request.path_params["project_id"]
    runtime = runtime_from(request)
    body = await read_json(request) if request.method == "PUT" else None
    usage = boolean(request.query_params.get("usage", "false"), "usage")

    def work(session: Session, context: RequestContext) -> dict[str, Any] | None:
        if request.method == "PUT":
            return quotas.update(session, context, runtime.settings, project_id, body)
        if request.method == "DELETE":
            quotas.reset(session, context, project_id)
            return None
        _project_allowed(context, project_id)
        return quotas.quota_set(session, runtime.settings, project_id, with_usage=usage)

    shown = await in_session(request, work)
    if shown is None:
        return Response(status_code=200)
    return JSONResponse({"quota_set": shown})


async def quota_defaults(request: Request) -> Response:
    project_id = request.path_params["project_id"]
    await in_session(request, lambda s, c: _project_allowed(c, project_id))
    return JSONResponse({"quota_set": quotas.default_set(runtime_from(request).settings,
                                                         project_id)})


async def limits(request: Request) -> Response:
    runtime = runtime_from(request)
    wanted = request.query_params.get("project_id")

    def work(session: Session, context: RequestContext) -> dict[str, Any]:
        project = context.project_id
        if wanted and version_of(request) >= (3, 39):
            context.require_admin()
            project = wanted
        return quotas.absolute_limits(session, runtime.settings, project)

    return JSONResponse({"limits": await in_session(request, work)})


async def list_attachments(request: Request) -> Response:
    def work(session: Session, context: RequestContext) -> list[dict[str, Any]]:
        stmt = select(VolumeAttachment, Volume).join(
            Volume, Volume.id == VolumeAttachment.volume_id)
        if not context.is_admin:
            stmt = stmt.where(Volume.project_id == context.project_id)
        if "volume_id" in request.query_params:
            stmt = stmt.where(VolumeAttachment.volume_id == request.query_params["volume_id"])
        if "instance_id" in request.query_params:
            stmt = stmt.where(VolumeAttachment.server_id == request.query_params["instance_id"])
        return [views.attachment_view(entry, volume)
                for entry, volume in session.execute(stmt).all()]

    return JSONResponse({"attachments": await in_session(request, work)})


async def show_attachment(request: Request) -> Response:
    attachment_id = request.path_params["id"]

    def work(session: Session, context: RequestContext) -> dict[str, Any]:
        entry = session.get(VolumeAttachment, attachment_id)
        volume = session.get(Volume, entry.volume_id) if entry else None
        if entry is None or volume is None or not volumes.visible(context, volume.project_id):
            raise NotFound(f"Volume attachment {attachment_id} could not be found.")
        return views.attachment_view(entry, volume)

    return JSONResponse({"attachment": await in_session(request, work)})


async def messages(request: Request) -> Response:
    wanted = request.path_params.get("id")

    def work(session: Session, context: RequestContext) -> dict[str, Any]:
        found = list_messages(session, context, base_url(request))
        if wanted is None:
            return {"messages": found}
        for message in found:
            if message["id"] == wanted:
                return {"message": message}
        raise NotFound(f"Message {wanted} could not be found.")

    return JSONResponse(await in_session(request, work))


class ProjectInPath:
    """`/v3/{project_id}/<collection>...` -> `/v3/<collection>...` (Cinder accepts both)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            root = scope.get("root_path", "")
            path = scope["path"]
            route = path[len(root):] if root and path.startswith(root) else path
            parts = route.split("/", 3)  # "", "v3", project?, rest
            if len(parts) >= 3 and parts[1] == "v3" and parts[2] and \
                    parts[2] not in COLLECTIONS:
                context = scope.get("state", {}).get("context")
                if context is not None and parts[2] != context.project_id and \
                        not context.is_admin:
                    response = render(Flavor.COMPUTE, 400, "Bad Request",
                                      "Malformed request url: the project id in the URL is "
                                      "not the token's project", "badRequest")
                    await response(scope, receive, send)
                    return
                rest = "/".join(parts[3:])
                scope = dict(scope, path=root + (f"/v3/{rest}" if rest else "/v3"))
        await self.app(scope, receive, send)


def build_app(runtime: Runtime) -> Starlette:
    v = "/v3"
    vol, snap = v + "/volumes/{id}", v + "/snapshots/{id}"
    routes = [
        Route("/", all_versions), Route(v, v3_versions), Route(v + "/", v3_versions),
        Route(v + "/volumes", list_volumes), Route(v + "/volumes/detail", list_volumes),
        Route(v + "/volumes", create_volume, methods=["POST"]),
        Route(v + "/volumes/summary", volume_summary),
        Route(vol, show_volume), Route(vol, update_volume, methods=["PUT"]),
        Route(vol, delete_volume, methods=["DELETE"]),
        Route(vol + "/action", action, methods=["POST"]),
        Route(vol + "/metadata", metadata_all, methods=["GET", "POST", "PUT"]),
        Route(vol + "/metadata/{key}", metadata_item, methods=["GET", "PUT", "DELETE"]),
        Route(v + "/snapshots", list_snapshots), Route(v + "/snapshots/detail", list_snapshots),
        Route(v + "/snapshots", create_snapshot, methods=["POST"]),
        Route(snap, show_snapshot), Route(snap, update_snapshot, methods=["PUT"]),
        Route(snap, delete_snapshot, methods=["DELETE"]),
        Route(snap + "/metadata", metadata_all, methods=["GET", "POST", "PUT"]),
        Route(snap + "/metadata/{key}", metadata_item, methods=["GET", "PUT", "DELETE"]),
        Route(v + "/types", list_types), Route(v + "/types", create_type, methods=["POST"]),
        Route(v + "/types/{id}", show_type),
        Route(v + "/os-availability-zone", availability_zones),
        Route(v + "/extensions", extensions),
        Route(v + "/os-quota-sets/{project_id}", quota_set, methods=["GET", "PUT", "DELETE"]),
        Route(v + "/os-quota-sets/{project_id}/defaults", quota_defaults),
        Route(v + "/limits", limits),
        Route(v + "/attachments", list_attachments),
        Route(v + "/attachments/detail", list_attachments),
        Route(v + "/attachments/{id}", show_attachment),
        Route(v + "/messages", messages), Route(v + "/messages/{id}", messages),
    ]
    app = part_app(runtime, routes, Flavor.COMPUTE)  # Cinder's error body is nova's
    app.router.redirect_slashes = False  # GET /volumes/ is a 404 in Cinder, not a list
    app.add_middleware(ProjectInPath)
    app.add_middleware(CINDER.middleware)
    return app
