"""Glance v2 over HTTP: thin handlers that parse, call `kumo.image.service`, shape replies.

Mounted under /image by `kumo.api.app`; database work runs in the thread pool so
the event loop keeps streaming other uploads and downloads.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Iterable
from typing import Any, TypeVar, cast

from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from kumo.api.context import RequestContext, context_of
from kumo.api.errors import Flavor
from kumo.api.http import expect_object, read_json
from kumo.api.parts import in_session, part_app, runtime_from
from kumo.errors import BadRequest, NotFound, RangeNotSatisfiable, UnsupportedMediaType
from kumo.image import changes, query, service
from kumo.image.import_routes import routes as import_routes
from kumo.image.imports import import_methods
from kumo.image.schemas import (
    image_schema,
    image_view,
    images_schema,
    member_schema,
    member_view,
    members_schema,
    record_view,
)
from kumo.image.upload import BlockChannel, pump_body
from kumo.runtime import Runtime

PATCH_TYPE = "application/openstack-images-v2.1-json-patch"
PATCH_TYPE_DRAFT10 = "application/openstack-images-v2.0-json-patch"
MEMBER_FIELDS = frozenset(
    {"status", "member", "member_id", "image_id", "created_at", "updated_at", "schema"}
)
T = TypeVar("T")
VERSIONS = [("v2.16", "CURRENT"), *((f"v2.{n}", "SUPPORTED") for n in range(15, -1, -1))]


def _versions(request: Request, status: int) -> Response:
    base = runtime_from(request).settings.base_url
    body = {
        "versions": [
            {"id": vid, "status": state, "links": [{"rel": "self", "href": f"{base}/image/v2/"}]}
            for vid, state in VERSIONS
        ]
    }
    return JSONResponse(body, status_code=status)


async def root(request: Request) -> Response:
    return _versions(request, 300)


async def versions(request: Request) -> Response:
    return _versions(request, 200)




async def no_image_id(_request: Request) -> Response:
    """`/v2/images/` with an empty id: 404, as Glance answers (not a redirect to the list)."""
    raise NotFound("No image found with ID ''")


def _image_id(request: Request) -> str:
    return str(request.path_params["image_id"])


async def create_image(request: Request) -> Response:
    context_of(request)
    body = expect_object(await read_json(request), "The image")
    view = await in_session(request, lambda s, c: image_view(service.create_image(s, c, body)))
    return JSONResponse(
        view,
        status_code=201,
        headers={
            "Location": f"{runtime_from(request).settings.base_url}/image/v2/images/{view['id']}",
            "OpenStack-image-import-methods": ",".join(
                import_methods(runtime_from(request).settings)),
        },
    )


async def list_images(request: Request) -> Response:
    parsed = query.parse_query(list(request.query_params.multi_items()))

    def work(session: Session, context: RequestContext) -> dict[str, Any]:
        page, marker = query.list_page(session, context, parsed)
        body: dict[str, Any] = {
            "images": [record_view(i.columns, i.properties, i.tags) for i in page],
            "first": "/v2/images",
            "schema": "/v2/schemas/images",
        }
        if marker is not None:
            body["next"] = query.next_link(parsed, marker)
        return body

    return JSONResponse(await in_session(request, work))


async def show_image(request: Request) -> Response:
    image_id = _image_id(request)
    return JSONResponse(
        await in_session(request, lambda s, c: image_view(service.get_image(s, c, image_id)))
    )


async def update_image(request: Request) -> Response:
    context_of(request)
    document = await read_json(request, content_types=(PATCH_TYPE, PATCH_TYPE_DRAFT10))
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    ops = changes.parse_patch(document, draft10=media == PATCH_TYPE_DRAFT10)
    image_id = _image_id(request)
    view = await in_session(
        request, lambda s, c: image_view(service.update_image(s, c, image_id, ops))
    )
    return JSONResponse(view)


async def delete_image(request: Request) -> Response:
    context = context_of(request)
    await run_in_threadpool(
        service.delete_image, runtime_from(request), context, _image_id(request)
    )
    return Response(status_code=204)


async def put_tag(request: Request) -> Response:
    image_id, tag = _image_id(request), str(request.path_params["tag"])
    await in_session(request, lambda s, c: service.add_tag(s, c, image_id, tag))
    return Response(status_code=204)


async def delete_tag(request: Request) -> Response:
    image_id, tag = _image_id(request), str(request.path_params["tag"])
    await in_session(request, lambda s, c: service.remove_tag(s, c, image_id, tag))
    return Response(status_code=204)


async def deactivate(request: Request) -> Response:
    image_id = _image_id(request)
    await in_session(request, lambda s, c: service.set_active_state(s, c, image_id, False))
    return Response(status_code=204)


async def reactivate(request: Request) -> Response:
    image_id = _image_id(request)
    await in_session(request, lambda s, c: service.set_active_state(s, c, image_id, True))
    return Response(status_code=204)


# -- members --------------------------------------------------------------------------


async def members(request: Request) -> Response:
    image_id = _image_id(request)
    if request.method == "POST":
        context_of(request)
        body = expect_object(await read_json(request), "The member")
        unknown = set(body) - {"member"}
        if "member" not in body or unknown:
            raise BadRequest('The body must be {"member": "<project id>"}')
        view = await in_session(
            request, lambda s, c: member_view(service.add_member(s, c, image_id, body["member"]))
        )
        return JSONResponse(view)
    listed = await in_session(
        request, lambda s, c: [member_view(m) for m in service.list_members(s, c, image_id)]
    )
    return JSONResponse({"members": listed, "schema": "/v2/schemas/members"})


async def member(request: Request) -> Response:
    image_id, member_id = _image_id(request), str(request.path_params["member_id"])
    if request.method == "DELETE":
        await in_session(request, lambda s, c: service.remove_member(s, c, image_id, member_id))
        return Response(status_code=204)
    if request.method == "PUT":
        context_of(request)
        body = expect_object(await read_json(request), "The member status")
        # The SDK sends the member record back with the new status; only status changes.
        if "status" not in body or set(body) - MEMBER_FIELDS:
            raise BadRequest('The body must be {"status": "accepted|rejected|pending"}')
        view = await in_session(
            request,
            lambda s, c: member_view(
                service.update_member(s, c, image_id, member_id, body["status"])
            ),
        )
        return JSONResponse(view)
    return JSONResponse(
        await in_session(
            request, lambda s, c: member_view(service.get_member(s, c, image_id, member_id))
        )
    )


# -- data -------------------------------------------------------------------------------


def _expected_size(request: Request) -> int | None:
    raw = request.headers.get("x-openstack-image-size")
    if raw is None:
        return None
    try:
        size = int(raw)
    except ValueError:
        raise BadRequest(f"x-openstack-image-size must be a whole number, got {raw!r}") from None
    if size < 0:
        raise BadRequest("x-openstack-image-size must not be negative")
    return size


def _content_length(request: Request) -> int | None:
    """The body's declared size; None when it is chunked (or the header is unusable)."""
    if "transfer-encoding" in request.headers:
        return None
    raw = request.headers.get("content-length", "")
    return int(raw) if raw.isdigit() else None


async def upload(request: Request) -> Response:
    """PUT .../file: gather the body into blocks; a worker thread inspects, hashes, stores."""
    context = context_of(request)
    runtime = runtime_from(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/octet-stream":
        raise UnsupportedMediaType(
            f"Content-Type {ctype or '(none)'!r} is not supported for image data; "
            "send application/octet-stream"
        )
    expected = _expected_size(request)
    channel = BlockChannel(asyncio.get_running_loop())
    # The service hands the blocks straight to `upload.ingest`, which takes views.
    blocks = cast(Iterable[bytes], channel)
    worker = asyncio.ensure_future(
        run_in_threadpool(
            service.upload_image_data, runtime, context, _image_id(request), blocks, expected
        )
    )
    await pump_body(request.receive, _content_length(request), channel, worker)
    await worker  # raises the upload's error, if any (mapped to Glance's shape)
    return Response(status_code=204)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def parse_range(header: str, size: int) -> tuple[int, int]:
    """An inclusive (first, last) byte range from a Range header; 416 if unsatisfiable."""
    match = _RANGE.match(header.strip())
    if not match or match.groups() == ("", ""):
        raise BadRequest(f"Invalid Range header {header!r}: expected bytes=first-last")
    first_raw, last_raw = match.groups()
    if first_raw == "":
        length = int(last_raw)
        if length == 0 or size == 0:
            raise RangeNotSatisfiable(f"Range {header!r} is not satisfiable for {size} bytes")
        return max(size - length, 0), size - 1
    first = int(first_raw)
    last = int(last_raw) if last_raw else size - 1
    if first >= size or last < first:
        raise RangeNotSatisfiable(f"Range {header!r} is not satisfiable for {size} bytes")
    return first, min(last, size - 1)


async def download(request: Request) -> Response:
    context = context_of(request)
    runtime = runtime_from(request)
    image_id = _image_id(request)
    header = request.headers.get("range")
    size = await run_in_threadpool(service.image_size, runtime, context, image_id)
    if size is None:
        return Response(status_code=204)
    byte_range = parse_range(header, size) if header else None
    data = await run_in_threadpool(service.open_download, runtime, context, image_id, byte_range)
    if data is None:
        return Response(status_code=204)
    headers = {"Content-Length": str(data.end - data.start)}
    status = 200
    if byte_range is not None:
        status = 206
        headers["Content-Range"] = f"bytes {data.start}-{data.end - 1}/{data.size}"
    elif data.checksum:
        headers["Content-MD5"] = data.checksum
    return StreamingResponse(
        data.chunks, status_code=status, headers=headers, media_type="application/octet-stream"
    )


# -- discovery ---------------------------------------------------------------------------


def _static(body: Callable[[], dict[str, Any]]) -> Callable[[Request], Any]:
    async def handler(_request: Request) -> Response:
        return JSONResponse(body())

    return handler


async def info_stores(request: Request) -> Response:
    context_of(request)
    return JSONResponse(
        {
            "stores": [
                {"id": "file", "description": "kumo's filesystem store", "default": True},
            ]
        }
    )


def build_app(runtime: Runtime) -> Starlette:
    images = "/v2/images/{image_id}"
    routes = [
        Route("/", root, methods=["GET"]),
        Route("/versions", versions, methods=["GET"]),
        Route("/v2/images", list_images, methods=["GET"]),
        Route("/v2/images", create_image, methods=["POST"]),
        Route("/v2/images/", no_image_id, methods=["GET", "DELETE", "PATCH"]),
        Route(images, show_image, methods=["GET"]),
        Route(images, update_image, methods=["PATCH"]),
        Route(images, delete_image, methods=["DELETE"]),
        Route(images + "/file", upload, methods=["PUT"]),
        Route(images + "/file", download, methods=["GET"]),
        Route(images + "/tags/{tag}", put_tag, methods=["PUT"]),
        Route(images + "/tags/{tag}", delete_tag, methods=["DELETE"]),
        Route(images + "/members", members, methods=["GET", "POST"]),
        Route(images + "/members/{member_id}", member, methods=["GET", "PUT", "DELETE"]),
        Route(images + "/actions/deactivate", deactivate, methods=["POST"]),
        Route(images + "/actions/reactivate", reactivate, methods=["POST"]),
        Route("/v2/schemas/image", _static(image_schema), methods=["GET"]),
        Route("/v2/schemas/images", _static(images_schema), methods=["GET"]),
        Route("/v2/schemas/member", _static(member_schema), methods=["GET"]),
        Route("/v2/schemas/members", _static(members_schema), methods=["GET"]),
        *import_routes(),
        Route("/v2/info/stores", info_stores, methods=["GET"]),
    ]
    from kumo.image.metadefs.routes import routes as metadef_routes

    return part_app(runtime, routes + metadef_routes(), Flavor.IMAGE)
