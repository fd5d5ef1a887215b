"""Nova's image proxy API (`/v2.1/images`), gone at 2.36 but still used by older clients
and by tempest below 2.36: list, show and delete images and edit their metadata
(Glance's custom properties) through the image part's own rules.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumo.api.context import RequestContext, context_of
from kumo.api.http import read_json
from kumo.api.parts import in_session, runtime_from
from kumo.compute import quotas, views
from kumo.compute.microversion import version_of
from kumo.errors import BadRequest, NotFound
from kumo.image import service
from kumo.image.changes import PatchOp
from kumo.image.models import Image
from kumo.image.query import ListQuery, run_query

# nova/api/openstack/compute/views/images.py
_STATUS = {"active": "ACTIVE", "queued": "SAVING", "saving": "SAVING", "uploading": "SAVING",
           "importing": "SAVING", "deleted": "DELETED", "pending_delete": "DELETED",
           "killed": "ERROR", "deactivated": "ERROR"}
_PROGRESS = {"queued": 25, "saving": 50, "uploading": 50, "importing": 50, "active": 100}


def _base(request: Request) -> str:
    return f"{runtime_from(request).settings.base_url}/compute/v2.1"


def _check_version(request: Request) -> None:
    if version_of(request) >= (2, 36):
        raise NotFound("The resource could not be found.")


def image_view(image: Image, base: str, detail: bool) -> dict[str, Any]:
    glance = base.rsplit("/compute/", 1)[0] + "/image"
    body: dict[str, Any] = {"id": image.id, "name": image.name, "links": [
        *views.links(base, "images", image.id),
        {"rel": "alternate", "type": "application/vnd.openstack.image",
         "href": f"{glance}/images/{image.id}"}]}
    if not detail:
        return body
    meta = image.property_dict()
    body.update({
        "status": _STATUS.get(image.status, "UNKNOWN"), "progress": _PROGRESS.get(image.status, 0),
        "minRam": image.min_ram or 0, "minDisk": image.min_disk or 0, "metadata": meta,
        "created": views.iso(image.created_at), "updated": views.iso(image.updated_at),
        "OS-EXT-IMG-SIZE:size": image.size or 0,
    })
    if "instance_uuid" in meta:
        server_id = meta["instance_uuid"]
        body["server"] = {"id": server_id, "links": views.links(base, "servers", server_id)}
    return body


def _matches(image: Image, query: dict[str, str]) -> bool:
    meta = image.property_dict()
    checks: dict[str, Callable[[], bool]] = {
        "name": lambda: image.name == query["name"],
        "status": lambda: _STATUS.get(image.status, "").lower() == query["status"].lower(),
        "server": lambda: meta.get("instance_uuid") == query["server"].rstrip("/").rsplit(
            "/", 1)[-1],
        "type": lambda: meta.get("image_type") == query["type"],
        "minRam": lambda: (image.min_ram or 0) >= int(query["minRam"]),
        "minDisk": lambda: (image.min_disk or 0) >= int(query["minDisk"]),
    }
    try:
        return all(check() for key, check in checks.items() if key in query)
    except ValueError:
        raise BadRequest("Invalid minRam or minDisk: a whole number") from None


async def list_images(request: Request) -> Response:
    _check_version(request)
    detail, base = request.url.path.endswith("/detail"), _base(request)
    query = dict(request.query_params)

    def work(session: Session, context: RequestContext) -> list[dict[str, Any]]:
        found, _ = run_query(session, context, ListQuery(limit=1000))
        found = [i for i in found if _matches(i, query)]
        if "changes-since" in query:
            from kumo.compute.usage import parse_time

            since = parse_time(query["changes-since"])
            found = [i for i in found if views.aware(i.updated_at) >= since]
        if "marker" in query:
            ids = [i.id for i in found]
            if query["marker"] not in ids:
                raise BadRequest(f"marker [{query['marker']}] not found")
            found = found[ids.index(query["marker"]) + 1:]
        if "limit" in query:
            try:
                found = found[: int(query["limit"])]
            except ValueError:
                raise BadRequest("Invalid limit: a whole number") from None
        return [image_view(i, base, detail) for i in found]

    return JSONResponse({"images": await in_session(request, work)})


async def show_image(request: Request) -> Response:
    _check_version(request)
    image_id, base = request.path_params["id"], _base(request)
    shown = await in_session(request, lambda s, c: image_view(
        _get(s, c, image_id), base, True))
    return JSONResponse({"image": shown})


def _get(session: Session, context: RequestContext, image_id: str) -> Image:
    try:
        return service.get_image(session, context, image_id)
    except NotFound:
        raise NotFound("Image not found.") from None


async def delete_image(request: Request) -> Response:
    _check_version(request)
    image_id, runtime, context = request.path_params["id"], runtime_from(request), \
        context_of(request)
    from starlette.concurrency import run_in_threadpool

    try:
        await run_in_threadpool(service.delete_image, runtime, context, image_id)
    except NotFound:
        raise NotFound("Image not found.") from None
    return Response(status_code=204)


def _set_metadata(session: Session, context: RequestContext, image_id: str,
                  meta: dict[str, Any], *, replace: bool, quota: Any) -> dict[str, str]:
    image = _get(session, context, image_id)
    current = image.property_dict()
    for key, value in meta.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 255 or not isinstance(value, str) \
                or len(value) > 255:
            raise BadRequest("Invalid metadata: string keys of 1-255 and values of at most 255 "
                             "characters")
    merged = dict(meta) if replace else {**current, **meta}
    quotas.check_metadata(session, quota, context.project_id, len(merged))
    ops = [PatchOp("remove", k) for k in current if k not in merged]
    ops += [PatchOp("add", k, v) for k, v in merged.items() if current.get(k) != v]
    if ops:
        service.update_image(session, context, image_id, ops)
    return merged


async def image_metadata(request: Request) -> Response:
    _check_version(request)
    image_id = request.path_params["id"]
    quota = runtime_from(request).settings.quota
    if request.method == "GET":
        props = await in_session(request, lambda s, c: _get(s, c, image_id).property_dict())
        return JSONResponse({"metadata": props})
    body = await read_json(request)
    meta = body.get("metadata") if isinstance(body, dict) else None
    if not isinstance(meta, dict):
        raise BadRequest("Malformed request body: 'metadata' is required")
    replace = request.method == "PUT"
    shown = await in_session(request, lambda s, c: _set_metadata(
        s, c, image_id, meta, replace=replace, quota=quota))
    return JSONResponse({"metadata": shown})


async def image_metadata_item(request: Request) -> Response:
    _check_version(request)
    image_id, key = request.path_params["id"], request.path_params["key"]
    quota = runtime_from(request).settings.quota
    if request.method == "GET":
        props = await in_session(request, lambda s, c: _get(s, c, image_id).property_dict())
        if key not in props:
            raise NotFound("Invalid metadata key")
        return JSONResponse({"meta": {key: props[key]}})
    if request.method == "DELETE":
        def remove(session: Session, context: RequestContext) -> None:
            if key not in _get(session, context, image_id).property_dict():
                raise NotFound("Invalid metadata key")
            service.update_image(session, context, image_id, [PatchOp("remove", key)])

        await in_session(request, remove)
        return Response(status_code=204)
    body = await read_json(request)
    item = body.get("meta") if isinstance(body, dict) else None
    if not isinstance(item, dict) or len(item) != 1 or key not in item:
        raise BadRequest("Request body and URI mismatch")
    await in_session(request, lambda s, c: _set_metadata(
        s, c, image_id, item, replace=False, quota=quota))
    return JSONResponse({"meta": item})


async def blank_id(request: Request) -> Response:
    context_of(request)
    raise NotFound("Image not found.")


def routes(prefix: str) -> list[Route]:
    i = prefix + "/images"
    return [
        Route(i, list_images), Route(i + "/detail", list_images),
        Route(i + "/{id}", show_image), Route(i + "/{id}", delete_image, methods=["DELETE"]),
        Route(i + "/", blank_id, methods=["GET", "DELETE"]),
        Route(i + "/{id}/metadata", image_metadata, methods=["GET", "POST", "PUT"]),
        Route(i + "/{id}/metadata/{key}", image_metadata_item,
              methods=["GET", "PUT", "DELETE"]),
    ]
