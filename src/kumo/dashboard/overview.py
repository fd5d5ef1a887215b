"""The overview page, and the networks page (what the Network API offers today)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from kumo.dashboard.client import ApiError
from kumo.dashboard.web import cloud_of, page, session_of, show


@page()
async def overview(request: Request) -> Response:
    cloud = cloud_of(request)
    servers = (await cloud.get("/compute/v2.1/servers/detail"))["servers"]
    images = (await cloud.get("/image/v2/images"))["images"]
    keypairs = (await cloud.get("/compute/v2.1/os-keypairs"))["keypairs"]
    usage: dict[str, int] = {"vcpus": 0, "ram": 0, "disk": 0, "running": 0}
    for server in servers:
        flavor = server.get("flavor") or {}
        usage["vcpus"] += int(flavor.get("vcpus", 0))
        usage["ram"] += int(flavor.get("ram", 0))
        usage["disk"] += int(flavor.get("disk", 0))
        usage["running"] += server.get("status") == "ACTIVE"
    return await show(request, "overview.html", servers=servers, images=images,
                      keypairs=keypairs, usage=usage)


@page()
async def networks(request: Request) -> Response:
    cloud = cloud_of(request)
    project = session_of(request).project_id  # Cinder's URLs name the project
    found: dict[str, Any] = {}
    for kind, path in (("networks", "/network/v2.0/networks"),
                       ("subnets", "/network/v2.0/subnets"),
                       ("routers", "/network/v2.0/routers"),
                       ("floatingips", "/network/v2.0/floatingips"),
                       ("volumes", f"/volume/v3/{project}/volumes/detail")):
        try:
            found[kind] = (await cloud.get(path))[kind]
        except ApiError:
            found[kind] = None  # this API is not in kumo (yet)
    return await show(request, "networks.html", **found)
