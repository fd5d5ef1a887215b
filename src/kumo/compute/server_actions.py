"""POST /servers/{id}/action, the rest of nova's actions: lock, pause, suspend, rebuild,
resize, rescue, backups, shelve, soft delete, security groups, reset state.

Each handler checks the request and the state (409 as nova), records the instance
action and the task state, and hands the guest work to the compute service
(`kumo.compute.lifecycle`).
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kumo.agent import migration
from kumo.api.context import RequestContext
from kumo.api.parts import runtime_from
from kumo.compute import quotas, server_groups, servers, views
from kumo.compute.actions import reserve_image
from kumo.compute.flavor_extras import visible_flavor
from kumo.compute.images import check_bootable
from kumo.compute.keypairs import get_keypair
from kumo.compute.lifecycle import flavor_of
from kumo.compute.microversion import version_of
from kumo.compute.models import ACTIVE, ERROR, STOPPED, Server
from kumo.compute.service import ComputeService
from kumo.compute.volumes import is_volume_backed
from kumo.db.base import utcnow
from kumo.errors import BadRequest, Forbidden, NotFound
from kumo.network import nics, secgroups

InSession = Callable[[Callable[[Session, Server], Any]], Awaitable[Any]]
Handler = Callable[[Request, InSession, ComputeService, RequestContext, str, Any],
                   Awaitable[Response]]


def _args(args: Any, action: str) -> dict[str, Any]:
    if args is None:
        return {}
    if not isinstance(args, dict):
        raise BadRequest(f"Invalid input for {action}: an object is required")
    return args


# -- lock -------------------------------------------------------------------------

async def lock(request: Request, in_session: InSession, compute: ComputeService,
               context: RequestContext, server_id: str, args: Any) -> Response:
    spec = _args(args, "lock")
    reason = spec.get("locked_reason")
    if spec and (version_of(request) < (2, 73) or set(spec) != {"locked_reason"}):
        raise BadRequest("Invalid input for lock: only locked_reason (2.73) is allowed")
    if reason is not None and (not isinstance(reason, str) or len(reason) > 255):
        raise BadRequest("Invalid input for field/attribute locked_reason")

    def work(session: Session, server: Server) -> None:
        context.require_writer()
        server.locked, server.locked_reason = True, reason
        server.locked_by = "admin" if context.is_admin else "owner"
        entry = servers.record_action(session, server, "lock", context)
        entry.finish_time, entry.result = utcnow(), "Success"

    await in_session(work)
    return Response(status_code=202)


async def unlock(request: Request, in_session: InSession, compute: ComputeService,
                 context: RequestContext, server_id: str, args: Any) -> Response:
    def work(session: Session, server: Server) -> None:
        context.require_writer()
        if server.locked and server.locked_by == "admin" and not context.is_admin:
            raise Forbidden(f"Instance {server.id} was locked by an admin; only an admin "
                            "may unlock it")
        server.locked, server.locked_reason, server.locked_by = False, None, None
        entry = servers.record_action(session, server, "unlock", context)
        entry.finish_time, entry.result = utcnow(), "Success"

    await in_session(work)
    return Response(status_code=202)


# -- simple state changes -------------------------------------------------------------

def _simple(action: str, submit: Callable[[ComputeService, str], object],
            status: int = 202) -> Handler:
    async def handler(request: Request, in_session: InSession, compute: ComputeService,
                      context: RequestContext, server_id: str, args: Any) -> Response:
        await in_session(lambda s, srv: servers.begin_action(s, context, srv, action))
        submit(compute, server_id)
        return Response(status_code=status)

    return handler


async def unshelve(request: Request, in_session: InSession, compute: ComputeService,
                   context: RequestContext, server_id: str, args: Any) -> Response:
    spec = _args(args, "unshelve")
    zone = spec.get("availability_zone")
    if zone not in (None, "nova") or set(spec) - {"availability_zone", "host"}:
        raise BadRequest(f"Invalid input for unshelve: availability zone {zone!r} does not "
                         "exist (kumo has the zone nova)")
    await in_session(lambda s, srv: servers.begin_action(s, context, srv, "unshelve"))
    compute.submit_unshelve(server_id, context)
    return Response(status_code=202)


# -- rebuild ------------------------------------------------------------------------------

async def rebuild(request: Request, in_session: InSession, compute: ComputeService,
                  context: RequestContext, server_id: str, args: Any) -> Response:
    spec, mv = _args(args, "rebuild"), version_of(request)
    image_ref = spec.get("imageRef")
    if not isinstance(image_ref, str) or not image_ref:
        raise BadRequest("Invalid input for field/attribute imageRef: an image id is required")
    admin_pass = spec.get("adminPass", servers.new_password())
    if not isinstance(admin_pass, str):
        raise BadRequest("Invalid input for field/attribute adminPass: a string")
    base = f"{runtime_from(request).settings.base_url}/compute/v2.1"
    quota = runtime_from(request).settings.quota

    def work(session: Session, server: Server) -> tuple[dict[str, Any], bool]:
        servers.check_action(context, server, "rebuild")
        if is_volume_backed(session, server.id):
            raise BadRequest("Rebuilding a volume-backed server is not supported (nova needs "
                             "microversion 2.93 and Cinder's volume reimage for it)")
        image = compute.images.boot_image(session, context,
                                          image_ref.rstrip("/").rsplit("/", 1)[-1])
        check_bootable(image, server.memory_mb, server.root_gb)
        if "name" in spec:
            name = spec["name"]
            if not isinstance(name, str) or not name.strip() or len(name) > 255:
                raise BadRequest("Invalid input for field/attribute name")
            server.name = name
        if "metadata" in spec:
            meta = servers.check_metadata(spec["metadata"])
            quotas.check_metadata(session, quota, server.project_id, len(meta))
            server.meta = meta
        server.access_ipv4, server.access_ipv6 = servers.access_ips(
            spec, server.access_ipv4, server.access_ipv6)
        server.disk_config = servers.disk_config(spec, server.disk_config)
        if "description" in spec:
            server.description = servers.description_of(spec, mv)
        if mv >= (2, 54) and "key_name" in spec:
            key = spec["key_name"]
            server.key_name = key
            server.key_data = None if key is None else get_keypair(session, context,
                                                                   str(key)).public_key
        if mv >= (2, 57) and "user_data" in spec:
            from kumo.metadata.userdata import validate_user_data

            data = spec["user_data"]
            server.user_data = None if data is None else validate_user_data(data)
        start = server.vm_state != STOPPED
        server.image_id = image.id
        server.task_state = "rebuilding"
        server.updated_at = utcnow()
        servers.record_action(session, server, "rebuild", context)
        session.flush()
        shown = views.server_view(server, base, mv, context, [], show=True, basic=mv < (2, 75),
                                  server_groups=server_groups.groups_of(session, server.id),
                                  nics=(found := nics.server_nics(session, server.id)),
                                  user_mode=nics.user_mode(runtime_from(request), found))
        if mv >= (2, 75):
            from kumo.compute.routes import group_names

            shown["security_groups"] = [{"name": n} for n in group_names(session, server)]
            shown.pop("OS-EXT-SRV-ATTR:user_data", None)
        if mv >= (2, 54):  # rebuild's view gained key_name (2.54) and user_data (2.57)
            shown["key_name"] = server.key_name
        if mv >= (2, 57):
            shown["user_data"] = None if server.user_data is None else \
                base64.b64encode(server.user_data).decode()
        shown["adminPass"] = admin_pass
        return shown, start

    shown, start = await in_session(work)
    compute.submit_rebuild(server_id, start)
    return JSONResponse({"server": shown}, status_code=202)


# -- resize -----------------------------------------------------------------------------

async def resize(request: Request, in_session: InSession, compute: ComputeService,
                 context: RequestContext, server_id: str, args: Any) -> Response:
    spec = _args(args, "resize")
    ref = spec.get("flavorRef")
    if not isinstance(ref, str | int) or not str(ref):
        raise BadRequest("Invalid input for field/attribute flavorRef: a flavor id is required")
    quota = runtime_from(request).settings.quota

    def work(session: Session, server: Server) -> bool:
        servers.check_action(context, server, "resize")
        try:
            flavor = visible_flavor(session, context, str(ref).rstrip("/").rsplit("/", 1)[-1])
        except NotFound:
            raise BadRequest(f"Flavor {ref} could not be found.") from None
        if flavor.id == server.flavor_id:
            raise BadRequest("When resizing, instances must change flavor!")
        if flavor.disk < server.root_gb or flavor.ephemeral < server.ephemeral_gb:
            raise BadRequest("Resizing to a smaller disk flavor is not allowed.")
        image = compute.images.boot_image(session, context, server.image_id)
        check_bootable(image, flavor.ram, flavor.disk)
        quotas.check_resize(session, quota, context, flavor.vcpus - server.vcpus,
                            flavor.ram - server.memory_mb)
        server.disk_config = servers.disk_config(spec, server.disk_config)
        server.old_flavor = flavor_of(server)
        server.flavor_id, server.flavor_name = flavor.id, flavor.name
        server.vcpus, server.memory_mb, server.root_gb = flavor.vcpus, flavor.ram, flavor.disk
        server.ephemeral_gb, server.swap_mb = flavor.ephemeral, flavor.swap
        server.flavor_extra_specs = dict(flavor.extra_specs or {})
        servers.begin_action(session, context, server, "resize")
        return server.vm_state == ACTIVE

    start = await in_session(work)
    compute.submit_resize(server_id, start)
    return Response(status_code=202)


# -- rescue -----------------------------------------------------------------------------

async def rescue(request: Request, in_session: InSession, compute: ComputeService,
                 context: RequestContext, server_id: str, args: Any) -> Response:
    spec = _args(args, "rescue")
    admin_pass = spec.get("adminPass", servers.new_password())
    ref = spec.get("rescue_image_ref")
    if not isinstance(admin_pass, str) or (ref is not None and not isinstance(ref, str)):
        raise BadRequest("Invalid input for rescue: adminPass and rescue_image_ref are strings")

    def work(session: Session, server: Server) -> str:
        servers.check_action(context, server, "rescue")
        image = compute.images.boot_image(session, context, ref or server.image_id)
        check_bootable(image, server.memory_mb, server.root_gb)
        servers.begin_action(session, context, server, "rescue")
        return image.id

    image_id = await in_session(work)
    compute.submit_rescue(server_id, image_id)
    return JSONResponse({"adminPass": admin_pass})


# -- backups and shelve -------------------------------------------------------------------

async def create_backup(request: Request, in_session: InSession, compute: ComputeService,
                        context: RequestContext, server_id: str, args: Any) -> Response:
    spec = _args(args, "createBackup")
    name, kind, rotation = spec.get("name"), spec.get("backup_type"), spec.get("rotation")
    if not isinstance(name, str) or not name.strip() or len(name) > 255:
        raise BadRequest("Invalid input for field/attribute name: 1-255 characters required")
    if not isinstance(kind, str) or not kind:
        raise BadRequest("Invalid input for field/attribute backup_type: a string")
    if isinstance(rotation, str) and rotation.isdigit():
        rotation = int(rotation)
    if not isinstance(rotation, int) or isinstance(rotation, bool) or rotation < 0:
        raise BadRequest("Invalid input for field/attribute rotation: an integer >= 0")
    extra = spec.get("metadata", {})
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise BadRequest("Invalid input for field/attribute metadata: string values")
    image_id = await reserve_image(in_session, compute, context, "createBackup", name,
                                   {"image_type": "backup", "backup_type": kind, **extra})
    compute.submit_backup(server_id, context, image_id, kind, rotation)
    if version_of(request) >= (2, 45):
        return JSONResponse({"image_id": image_id}, status_code=202)
    location = f"{runtime_from(request).settings.base_url}/image/v2/images/{image_id}"
    return Response(status_code=202, headers={"Location": location})


async def shelve(request: Request, in_session: InSession, compute: ComputeService,
                 context: RequestContext, server_id: str, args: Any) -> Response:
    image_id = await reserve_image(in_session, compute, context, "shelve", None, {})
    compute.submit_shelve(server_id, context, image_id)
    return Response(status_code=202)


# -- deletes ---------------------------------------------------------------------------------

async def force_delete(request: Request, in_session: InSession, compute: ComputeService,
                       context: RequestContext, server_id: str, args: Any) -> Response:
    def work(session: Session, server: Server) -> bool:
        return servers.begin_delete(session, context, server, force=True)

    if await in_session(work):
        compute.submit_delete(server_id)
    return Response(status_code=202)


# -- security groups -----------------------------------------------------------------------

def _security_group(add: bool) -> Handler:
    async def handler(request: Request, in_session: InSession, compute: ComputeService,
                      context: RequestContext, server_id: str, args: Any) -> Response:
        name = args.get("name") if isinstance(args, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise BadRequest("Invalid input for field/attribute name: a security group name")

        def work(session: Session, server: Server) -> None:
            context.require_writer()
            servers.check_unlocked(context, server)
            try:
                group = secgroups.find_for_server(session, context, name)
            except BadRequest:
                raise NotFound(f"Security group {name} not found for project "
                               f"{context.project_id}.") from None
            on_ports = nics.server_group_ids(session, server.id)
            current = list(server.security_group_ids or []) if on_ports is None else on_ports
            if add and group.id in current:
                raise BadRequest(f"Security group {name} is already associated with the "
                                 f"instance {server.id}")
            if not add and group.id not in current:
                raise BadRequest(f"Security group {name} not associated with the instance "
                                 f"{server.id}")
            server.security_group_ids = [*current, group.id] if add else [
                g for g in current if g != group.id]
            nics.set_server_group(session, context, server.id, group.id, add)
            action = "addSecurityGroup" if add else "removeSecurityGroup"
            entry = servers.record_action(session, server, action, context)
            entry.finish_time, entry.result = utcnow(), "Success"

        await in_session(work)
        nics.notify(runtime_from(request))
        compute.submit_forwards([server_id])
        return Response(status_code=202)

    return handler


async def reset_state(request: Request, in_session: InSession, compute: ComputeService,
                      context: RequestContext, server_id: str, args: Any) -> Response:
    state = args.get("state") if isinstance(args, dict) else None
    if state not in ("active", "error"):
        raise BadRequest("Invalid input for field/attribute state: active or error")

    def work(session: Session, server: Server) -> None:
        context.require_admin()
        server.vm_state, server.task_state = (ACTIVE if state == "active" else ERROR), None

    await in_session(work)
    return Response(status_code=202)


HANDLERS: dict[str, Handler] = {
    "lock": lock, "unlock": unlock,
    "pause": _simple("pause", lambda c, sid: c.submit_pause(sid, True)),
    "unpause": _simple("unpause", lambda c, sid: c.submit_pause(sid, False)),
    "suspend": _simple("suspend", lambda c, sid: c.submit_suspend(sid)),
    "resume": _simple("resume", lambda c, sid: c.submit_resume(sid)),
    "rebuild": rebuild, "resize": resize,
    "confirmResize": _simple("confirmResize", lambda c, sid: c.submit_confirm_resize(sid), 204),
    "revertResize": _simple("revertResize", lambda c, sid: c.submit_revert_resize(sid)),
    "rescue": rescue,
    "unrescue": _simple("unrescue", lambda c, sid: c.submit_unrescue(sid)),
    "createBackup": create_backup, "shelve": shelve,
    "shelveOffload": _simple("shelveOffload", lambda c, sid: c.submit_shelve_offload(sid)),
    "unshelve": unshelve,
    "restore": _simple("restore", lambda c, sid: c.submit_restore(sid)),
    "forceDelete": force_delete,
    "addSecurityGroup": _security_group(True), "removeSecurityGroup": _security_group(False),
    "os-resetState": reset_state,
    "migrate": migration.migrate,
}
