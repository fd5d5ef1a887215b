"""Servers: list with live status, launch form, detail page with both consoles, the
console log and the lifecycle actions. Everything goes through Nova's API."""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kumo.dashboard.client import ApiError
from kumo.dashboard.web import cloud_of, form_of, page, redirect, render, show

SERVERS = "/compute/v2.1/servers"
TRANSITIONAL = ("BUILD", "REBOOT", "HARD_REBOOT", "DELETED")
# action name in the page -> Nova action body
ACTIONS: dict[str, Any] = {
    "start": {"os-start": None},
    "stop": {"os-stop": None},
    "reboot": {"reboot": {"type": "SOFT"}},
    "hard-reboot": {"reboot": {"type": "HARD"}},
}
CONSOLES = {"novnc": "vnc", "serial": "serial"}


async def _servers(request: Request) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = (await cloud_of(request).get(f"{SERVERS}/detail"))["servers"]
    return found


@page()
async def list_servers(request: Request) -> Response:
    return await show(request, "servers.html", servers=await _servers(request))


@page()
async def server_rows(request: Request) -> Response:
    """The table body alone, which the list page refreshes every few seconds."""
    return render(request, "_server_rows.html", servers=await _servers(request))


async def _choices(request: Request) -> dict[str, Any]:
    cloud = cloud_of(request)
    images = (await cloud.get("/image/v2/images", status="active"))["images"]
    flavors = (await cloud.get("/compute/v2.1/flavors/detail"))["flavors"]
    keypairs = [k["keypair"] for k in (await cloud.get("/compute/v2.1/os-keypairs"))["keypairs"]]
    groups = (await cloud.get("/network/v2.0/security-groups"))["security_groups"]
    try:
        networks = (await cloud.get("/network/v2.0/networks"))["networks"]
    except ApiError:
        networks = []
    return {"images": images, "flavors": flavors, "keypairs": keypairs, "groups": groups,
            "networks": networks}


@page()
async def launch_form(request: Request) -> Response:
    return await show(request, "launch.html", **await _choices(request),
                      chosen_image=request.query_params.get("image", ""))


@page()
async def launch(request: Request) -> Response:
    form = await form_of(request)
    spec: dict[str, Any] = {
        "name": str(form.get("name", "")).strip(),
        "imageRef": str(form.get("image", "")),
        "flavorRef": str(form.get("flavor", "")),
        "networks": "auto",
    }
    if form.get("network"):
        spec["networks"] = [{"uuid": str(form.get("network"))}]
    if form.get("key_name"):
        spec["key_name"] = str(form.get("key_name"))
    groups = [str(g) for g in form.getlist("security_groups")]
    if groups:
        spec["security_groups"] = [{"name": g} for g in groups]
    user_data = str(form.get("user_data", ""))
    if user_data.strip():
        spec["user_data"] = base64.b64encode(user_data.replace("\r\n", "\n").encode()).decode()
    if form.get("config_drive"):
        spec["config_drive"] = True
    made = await cloud_of(request).post(SERVERS, {"server": spec})
    server_id = made["server"]["id"]
    return redirect(request, f"/servers/{server_id}", f"Server {spec['name']} is being built.")


async def _server(request: Request) -> dict[str, Any]:
    server: dict[str, Any] = (await cloud_of(request).get(
        f"{SERVERS}/{request.path_params['id']}"))["server"]
    return server


@page()
async def show_server(request: Request) -> Response:
    server = await _server(request)
    return await show(request, "server.html", server=server,
                      transitional=server["status"] in TRANSITIONAL)


@page()
async def server_status(request: Request) -> Response:
    """The status block alone (htmx polls it); tells the page to reload on a change."""
    try:
        server = await _server(request)
    except ApiError as exc:
        if exc.status == 404:
            return redirect(request, "/servers", "The server is gone.")
        raise
    return render(request, "_server_status.html", server=server,
                  transitional=server["status"] in TRANSITIONAL)


@page()
async def console_log(request: Request) -> Response:
    server_id = request.path_params["id"]
    body = {"os-getConsoleOutput": {"length": 200}}
    try:
        output = (await cloud_of(request).post(f"{SERVERS}/{server_id}/action", body))["output"]
    except ApiError as exc:
        output = f"({exc.message})"
    return render(request, "_console_log.html", output=output)


@page()
async def server_action(request: Request) -> Response:
    server_id, name = request.path_params["id"], request.path_params["action"]
    cloud = cloud_of(request)
    if name == "delete":
        await cloud.delete(f"{SERVERS}/{server_id}")
        return redirect(request, "/servers", "The server is being deleted.")
    if name == "snapshot":
        form = await form_of(request)
        snapshot = str(form.get("name", "")).strip() or "snapshot"
        await cloud.post(f"{SERVERS}/{server_id}/action", {"createImage": {"name": snapshot}})
        return redirect(request, f"/servers/{server_id}",
                        f"Snapshot {snapshot} is being made; it appears under Images.")
    body = ACTIONS.get(name)
    if body is None:
        return Response(f"no such action {name}", status_code=404)
    await cloud.post(f"{SERVERS}/{server_id}/action", body)
    return redirect(request, f"/servers/{server_id}", f"{name} requested.")


@page()
async def open_console(request: Request) -> Response:
    """A single-use console URL from Nova's API, as a path on this host for the page's
    script (the token travels in a response body, never in a page's address)."""
    server_id = request.path_params["id"]
    kind = request.path_params["kind"]
    if kind not in CONSOLES:
        return Response("novnc or serial", status_code=404)
    body = {"remote_console": {"protocol": CONSOLES[kind], "type": kind}}
    made = await cloud_of(request).post(f"{SERVERS}/{server_id}/remote-consoles", body)
    url = urlsplit(made["remote_console"]["url"])
    path = url.path + (f"/websockify?{url.query}" if kind == "novnc" else f"?{url.query}")
    return JSONResponse({"type": kind, "path": path}, headers={"Cache-Control": "no-store"})
