"""Glance's import routes: stage, import, the import methods, and tasks (see `imports`)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any, cast

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumo.api.context import RequestContext, context_of
from kumo.api.http import read_json
from kumo.api.parts import in_session, runtime_from
from kumo.errors import UnsupportedMediaType
from kumo.image import imports
from kumo.image.upload import BlockChannel, pump_body


def _image_id(request: Request) -> str:
    return str(request.path_params["image_id"])


async def stage(request: Request) -> Response:
    """PUT .../stage: streamed into the staging area like an upload (204)."""
    from kumo.image.routes import _content_length, _expected_size

    context = context_of(request)
    runtime = runtime_from(request)
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/octet-stream":
        raise UnsupportedMediaType(f"Content-Type {ctype or '(none)'!r} is not supported for "
                                   "image data; send application/octet-stream")
    expected = _expected_size(request)
    channel = BlockChannel(asyncio.get_running_loop())
    blocks = cast(Iterable[bytes], channel)
    worker = asyncio.ensure_future(run_in_threadpool(
        imports.stage, runtime, context, _image_id(request), blocks, expected))
    await pump_body(request.receive, _content_length(request), channel, worker)
    await worker
    return Response(status_code=204)


async def import_image(request: Request) -> Response:
    """POST .../import: a task runs the import; 202 at once, as in Glance."""
    body = await read_json(request)
    runtime = runtime_from(request)
    image_id = _image_id(request)

    def work(session: Session, context: RequestContext) -> str:
        task = imports.begin_import(session, context, runtime.settings, image_id, body,
                                    context.request_id or None)
        return task.id

    task_id = await in_session(request, work)
    imports.importer_of(runtime).submit(task_id)
    return Response(status_code=202)


async def info_import(request: Request) -> Response:
    context_of(request)
    return JSONResponse({"import-methods": {
        "description": "Import methods available.", "type": "array",
        "value": imports.import_methods(runtime_from(request).settings)}})


async def image_tasks(request: Request) -> Response:
    """GET /v2/images/{id}/tasks (Glance 2.12): the image's import tasks, newest first."""
    from kumo.image import service

    image_id = _image_id(request)

    def work(session: Session, context: RequestContext) -> list[dict[str, Any]]:
        service.get_image(session, context, image_id)
        return [imports.task_view(t) for t in imports.visible_tasks(session, context, image_id)]

    return JSONResponse({"tasks": await in_session(request, work)})


async def list_tasks(request: Request) -> Response:
    found = await in_session(request, lambda s, c: [
        imports.task_view(t, full=False) for t in imports.visible_tasks(s, c)])
    return JSONResponse({"tasks": found, "first": "/v2/tasks", "schema": "/v2/schemas/tasks"})


async def show_task(request: Request) -> Response:
    task_id = str(request.path_params["task_id"])
    return JSONResponse(await in_session(request, lambda s, c: imports.task_view(
        imports.get_task(s, c, task_id))))


def routes() -> list[Route]:
    images = "/v2/images/{image_id}"
    return [
        Route(images + "/stage", stage, methods=["PUT"]),
        Route(images + "/import", import_image, methods=["POST"]),
        Route(images + "/tasks", image_tasks, methods=["GET"]),
        Route("/v2/tasks", list_tasks, methods=["GET"]),
        Route("/v2/tasks/{task_id}", show_task, methods=["GET"]),
        Route("/v2/info/import", info_import, methods=["GET"]),
    ]
