"""Images: list, upload from the browser (streamed on to Glance), lint, visibility, delete.

An upload is two requests from the page: a form post that registers the image
(Glance `POST /v2/images`), then the file itself as the raw body of an XHR (so the
browser reports progress), which this module streams into Glance's
`PUT /v2/images/{id}/file` chunk by chunk. On the way, a raw or qcow2 image is also
written to a scratch file and linted (`kumo.imagebuild.lint`, seed 003's rules) once
the upload is done; the findings are kept for the image's page.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kumo.dashboard.client import ApiError
from kumo.dashboard.web import cloud_of, dashboard_of, form_of, page, redirect, show

IMAGES = "/image/v2/images"
DISK_FORMATS = ("qcow2", "raw", "iso", "vmdk", "vdi", "vhd", "vhdx")
LINTABLE = ("qcow2", "raw")
VISIBILITIES = ("private", "shared", "community", "public")
LINT_RESULTS_KEPT = 200


@page()
async def list_images(request: Request) -> Response:
    images = (await cloud_of(request).get(IMAGES, sort="created_at:desc"))["images"]
    return await show(request, "images.html", images=images, disk_formats=DISK_FORMATS,
                      visibilities=VISIBILITIES)


@page()
async def create_image(request: Request) -> Response:
    """Register the image; answers JSON {id} for the page's upload script."""
    form = await form_of(request)
    disk_format = str(form.get("disk_format", "qcow2"))
    body: dict[str, Any] = {"name": str(form.get("name", "")).strip() or None,
                            "disk_format": disk_format,
                            "container_format": str(form.get("container_format", "bare")),
                            "visibility": str(form.get("visibility", "private"))}
    for key in ("min_disk", "min_ram"):
        if str(form.get(key, "")).strip():
            try:
                body[key] = int(str(form.get(key)))
            except ValueError:
                return Response(f"{key} must be a whole number", status_code=400)
    image = await cloud_of(request).post(IMAGES, body)
    return JSONResponse({"id": image["id"]}, status_code=201)


@page()
async def upload_file(request: Request) -> Response:
    """Stream the request body into the image; lint it afterwards when it is a disk."""
    image_id = request.path_params["id"]
    cloud = cloud_of(request)
    image = await cloud.get(f"{IMAGES}/{image_id}")
    dash = dashboard_of(request)
    scratch: Path | None = None
    if image.get("disk_format") in LINTABLE:
        dash.work_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="upload-", dir=dash.work_dir)
        os.close(fd)
        scratch = Path(name)
    headers = {"Content-Type": "application/octet-stream"}
    if "content-length" in request.headers:
        headers["Content-Length"] = request.headers["content-length"]
    try:
        await cloud.request("PUT", f"{IMAGES}/{image_id}/file", headers=headers,
                            content=_tee(request.stream(), scratch), timeout=None)
        findings = await _lint(scratch, str(image.get("disk_format"))) if scratch else []
    finally:
        if scratch is not None:
            scratch.unlink(missing_ok=True)
    if scratch is not None:
        if len(dash.lint_results) >= LINT_RESULTS_KEPT:
            dash.lint_results.pop(next(iter(dash.lint_results)))
        dash.lint_results[image_id] = findings
    return JSONResponse({"id": image_id, "findings": findings})


async def _tee(body: AsyncIterator[bytes], copy: Path | None) -> AsyncIterator[bytes]:
    """Pass the body on, writing a copy for lint when asked."""
    with open(copy, "wb") if copy is not None else contextlib.nullcontext() as out:
        async for chunk in body:
            if out is not None and chunk:
                out.write(chunk)  # into the page cache: no wait worth a thread hop
            yield chunk


async def _lint(path: Path, disk_format: str) -> list[dict[str, str]]:
    from kumo.imagebuild.lint import lint_image

    def run() -> list[dict[str, str]]:
        try:
            found = lint_image(path, disk_format)
        except Exception as exc:  # an unreadable disk is a finding, not a crash
            return [{"severity": "error", "rule": "readable", "message": str(exc), "fix": ""}]
        return [{"severity": f.severity.value, "rule": f.rule, "message": f.message,
                 "fix": f.fix} for f in found]

    return await run_in_threadpool(run)


@page()
async def show_image(request: Request) -> Response:
    image_id = request.path_params["id"]
    image = await cloud_of(request).get(f"{IMAGES}/{image_id}")
    findings = dashboard_of(request).lint_results.get(image_id)
    return await show(request, "image.html", image=image, findings=findings,
                      visibilities=VISIBILITIES)


@page()
async def set_visibility(request: Request) -> Response:
    image_id = request.path_params["id"]
    visibility = str((await form_of(request)).get("visibility", ""))
    patch = [{"op": "replace", "path": "/visibility", "value": visibility}]
    await cloud_of(request).request(
        "PATCH", f"{IMAGES}/{image_id}", json=patch,
        headers={"Content-Type": "application/openstack-images-v2.1-json-patch"})
    return redirect(request, f"/images/{image_id}", f"Visibility is now {visibility}.")


@page()
async def delete_image(request: Request) -> Response:
    image_id = request.path_params["id"]
    try:
        await cloud_of(request).delete(f"{IMAGES}/{image_id}")
    except ApiError as exc:
        return redirect(request, f"/images/{image_id}", f"Error: {exc.message}")
    return redirect(request, "/images", "Image deleted.")

