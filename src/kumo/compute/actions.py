"""POST /servers/{id}/action: os-start, os-stop, reboot, createImage, os-getConsoleOutput."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kumo.api.context import RequestContext, context_of
from kumo.api.parts import runtime_from
from kumo.compute import servers
from kumo.compute.microversion import version_of
from kumo.compute.models import Server
from kumo.compute.service import ComputeService, compute_of
from kumo.console.nova import ACTIONS as CONSOLE_ACTIONS
from kumo.console.nova import console_action
from kumo.db.engine import session_scope
from kumo.errors import BadRequest, Conflict, KumoError

# Image properties a snapshot does not inherit from the image its server booted from.
_NOT_INHERITED = {"image_type", "instance_uuid", "base_image_ref", "owner_specified.openstack.md5",
                  "owner_specified.openstack.sha256", "owner_specified.openstack.object"}


async def server_action(request: Request, server_id: str, body: Any) -> Response:
    """Dispatch one action; 404 for a missing server, 400 for an unknown action, 409 when
    the state forbids it."""
    from kumo.compute.server_actions import HANDLERS

    context = context_of(request)
    runtime = runtime_from(request)
    compute = compute_of(runtime)

    def in_session(work: Any) -> Any:
        def run() -> Any:
            with session_scope(runtime.sessions) as session:
                server = servers.get_server(session, context, server_id)
                return work(session, server)

        return run_in_threadpool(run)

    await in_session(lambda _s, _srv: None)  # 404 first, whatever the body says
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest("Malformed request body: expected exactly one action")
    name, args = next(iter(body.items()))
    if name in HANDLERS:
        return await HANDLERS[name](request, in_session, compute, context, server_id, args)

    if name in ("os-start", "os-stop"):
        verb = "start" if name == "os-start" else "stop"
        await in_session(lambda s, srv: servers.begin_action(s, context, srv, verb))
        (compute.submit_start if verb == "start" else compute.submit_stop)(server_id)
        return Response(status_code=202)
    if name == "reboot":
        kind = args.get("type") if isinstance(args, dict) else None
        if not isinstance(kind, str) or kind.upper() not in ("SOFT", "HARD"):
            raise BadRequest("Invalid input for field/attribute type: SOFT or HARD required")
        hard = kind.upper() == "HARD"
        await in_session(lambda s, srv: servers.begin_action(
            s, context, srv, "reboot_hard" if hard else "reboot"))
        compute.submit_reboot(server_id, hard)
        return Response(status_code=202)
    if name == "os-getConsoleOutput":
        return await _console(in_session, compute, server_id, args)
    if name in CONSOLE_ACTIONS:
        return await console_action(request, server_id, name, args)
    if name == "createImage":
        return await _create_image(request, in_session, compute, context, server_id, args)
    raise BadRequest(f"There is no such action: {name}")


def snapshot_facts(session: Session, server: Server, context: RequestContext,
                   compute: ComputeService, action: str) -> tuple[dict[str, str], int, int]:
    """A snapshot image's properties (inherited from the server's image), min_disk, min_ram."""
    servers.check_action(context, server, action)
    try:
        base = compute.images.boot_image(session, context, server.image_id)
        inherited = {k: v for k, v in base.properties.items() if k not in _NOT_INHERITED}
        min_ram = base.min_ram
    except KumoError:  # the base image may be gone: the snapshot stands on its own
        inherited, min_ram = {}, 0
    if not server.image_id:  # volume-backed: its root volume keeps its image's properties
        inherited = compute.volumes.root_image_properties(session, server.id)
    properties = {**inherited, "image_type": "snapshot", "instance_uuid": server.id,
                  "base_image_ref": server.image_id, "user_id": context.user_id,
                  "owner_project_name": context.project_name,
                  "owner_user_name": context.user_name}
    return properties, server.root_gb, min_ram


async def reserve_image(in_session: Any, compute: ComputeService, context: RequestContext,
                        action: str, name: str | None, extra: dict[str, str]) -> str:
    """Register the queued image a snapshot (createImage, createBackup, shelve) goes into,
    then mark the server busy with `action`; the image's id."""
    properties, min_disk, min_ram = await in_session(
        lambda s, srv: snapshot_facts(s, srv, context, compute, action))
    properties.update(extra)
    if name is None:  # shelve: nova names the snapshot after the server
        name = await in_session(lambda s, srv: f"{srv.name}-shelved")
    # The image is registered (queued) before the server is marked busy, in its own
    # transaction: SQLite allows one writer, and the client reads the image at once.
    image_id: str = await run_in_threadpool(
        compute.images.reserve_snapshot, context, name, "qcow2", properties, min_disk, min_ram)
    try:
        await in_session(lambda s, srv: servers.begin_action(s, context, srv, action))
    except KumoError:
        await run_in_threadpool(compute.images.abandon_snapshot, context, image_id)
        raise
    return image_id


async def _console(in_session: Any, compute: ComputeService, server_id: str,
                   args: Any) -> Response:
    length = args.get("length") if isinstance(args, dict) else None
    if isinstance(length, str) and length.lstrip("-").isdigit():
        length = int(length)
    if length is not None and (not isinstance(length, int) or isinstance(length, bool)
                               or length < -1):
        raise BadRequest("Invalid input for field/attribute length: an integer >= -1")

    def check(_session: Session, server: Server) -> None:
        if server.vm_state == "building" and server.host is None:
            raise Conflict(f"Instance {server.id} is not ready yet: it is still building")

    await in_session(check)
    output = await run_in_threadpool(
        compute.console_log, server_id, None if length in (None, -1) else length)
    return JSONResponse({"output": output})


async def _create_image(request: Request, in_session: Any, compute: ComputeService,
                        context: RequestContext, server_id: str, args: Any) -> Response:
    if not isinstance(args, dict):
        raise BadRequest("Invalid input: createImage needs an object with a name")
    name = args.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise BadRequest("Invalid input for field/attribute name: 1-255 characters required")
    extra = args.get("metadata", {})
    if not isinstance(extra, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in extra.items()):
        raise BadRequest("Invalid input for field/attribute metadata: string values required")

    image_id = await reserve_image(in_session, compute, context, "createImage", name, extra)
    compute.submit_snapshot(server_id, context, image_id, name)
    location = f"{runtime_from(request).settings.base_url}/image/v2/images/{image_id}"
    if version_of(request) >= (2, 45):
        return JSONResponse({"image_id": image_id}, status_code=202)
    return Response(status_code=202, headers={"Location": location})
