"""Admin-only HTTP routes for this host's image cache (`kumo cache list|clean`).

Mounted in the compute API (Nova error shape) as `/v2.1/os-kumo-cache`:
- `GET  /v2.1/os-kumo-cache`: every file in `_base` with its image, size, users,
  age and verdict (in use / removable / too young / unknown);
- `POST /v2.1/os-kumo-cache/clean` `{"dry_run": false}`: run a manager pass now.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumo.api.context import context_of
from kumo.api.http import read_json
from kumo.api.parts import runtime_from
from kumo.errors import BadRequest, ServiceUnavailable
from kumo.hypervisor.cache_manager import BaseFileReport, run_pass, scan
from kumo.hypervisor.local import LocalHypervisor

PATH = "/v2.1/os-kumo-cache"


def report_body(report: BaseFileReport) -> dict[str, Any]:
    return {
        "name": report.name,
        "path": str(report.path),
        "image_id": report.image_id,
        "size": report.size,
        "age_seconds": int(report.age_seconds),
        "resized": report.resized,
        "used_by": list(report.used_by),
        "verdict": report.verdict,
    }


def _hypervisor(request: Request) -> LocalHypervisor:
    context_of(request).require_admin()
    services = runtime_from(request).services
    hypervisor = services.get("hypervisor")
    if hypervisor is None and services.get("compute") is not None:
        hypervisor = getattr(services["compute"], "hypervisor", None)
    if not isinstance(hypervisor, LocalHypervisor):
        raise ServiceUnavailable("this kumo runs no hypervisor, so it has no image cache")
    return hypervisor


async def list_cache(request: Request) -> Response:
    """The image cache as the next manager pass would judge it."""
    hv = _hypervisor(request)
    reports = await asyncio.to_thread(
        scan, hv.cache, hv.instances_path, hv.settings.image_cache
    )
    return JSONResponse({
        "base_dir": str(hv.cache.base_dir),
        "remove_unused_base_images": hv.settings.image_cache.remove_unused_base_images,
        "base_files": [report_body(r) for r in reports],
    })


async def clean_cache(request: Request) -> Response:
    """Run one manager pass now; `dry_run` only reports."""
    hv = _hypervisor(request)
    body = await read_json(request) if request.headers.get("content-type") else {}
    dry_run = body.get("dry_run", False) if isinstance(body, dict) else None
    if not isinstance(dry_run, bool):
        raise BadRequest("dry_run must be true or false")
    reports = await asyncio.to_thread(
        run_pass, hv.cache, hv.instances_path, hv.settings.image_cache, dry_run=dry_run
    )
    return JSONResponse({
        "dry_run": dry_run,
        "base_files": [report_body(r) for r in reports],
        "removed": [r.name for r in reports if r.verdict == "removable" and not r.path.exists()],
    })


def routes() -> list[Route]:
    """The cache routes, for the compute app's route list."""
    return [
        Route(PATH, list_cache, methods=["GET"]),
        Route(PATH + "/clean", clean_cache, methods=["POST"]),
    ]
