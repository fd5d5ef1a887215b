"""POST /volumes/{id}/action: os-extend, os-volume_upload_image, os-set_bootable,
os-update_readonly_flag, image metadata, and the admin's os-reset_status and
os-force_delete. The legacy attach actions nova once used are refused: attaching
goes through the Compute API (os-volume_attachments)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kumo.api.context import RequestContext, context_of
from kumo.api.parts import runtime_from
from kumo.db.engine import session_scope
from kumo.errors import BadRequest, KumoError
from kumo.image.lifecycle import check_container_format, check_disk_format, check_visibility
from kumo.volume import views, volumes
from kumo.volume.microversion import version_of
from kumo.volume.models import AVAILABLE, IN_USE, VOLUME_STATUSES, Volume
from kumo.volume.service import VolumeService, volume_service_of
from kumo.volume.volumes import InvalidInput, InvalidVolume, attachments_of, get_volume

_LEGACY_ATTACH = {"os-attach", "os-detach", "os-reserve", "os-unreserve", "os-begin_detaching",
                  "os-roll_detaching", "os-initialize_connection", "os-terminate_connection",
                  "os-extend_volume_completion"}
# Formats a volume can be written out as (qemu-img can write them; Glance accepts them).
UPLOAD_FORMATS = ("raw", "qcow2", "vmdk", "vdi", "vhd", "vhdx")


def boolean(value: Any, what: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no",
                                                    "on", "off"):
        return value.lower() in ("true", "1", "yes", "on")
    raise InvalidInput(f"{what} must be a boolean, got {value!r}")


async def volume_action(request: Request, volume_id: str, body: Any) -> Response:
    """Dispatch one action; 400 for an unknown one."""
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest("Malformed request body: expected exactly one action")
    name, args = next(iter(body.items()))
    context = context_of(request)
    runtime = runtime_from(request)
    service = volume_service_of(runtime)

    def in_session(work: Any) -> Any:
        def run() -> Any:
            with session_scope(runtime.sessions) as session:
                return work(session, get_volume(session, context, volume_id))

        return run_in_threadpool(run)

    if name in _LEGACY_ATTACH:
        raise BadRequest(f"{name} is not supported: attach and detach volumes through the "
                         "Compute API (openstack server add volume / remove volume)")
    if name == "os-extend":
        new_size = args.get("new_size") if isinstance(args, dict) else None
        version = version_of(request)

        def extend(session: Session, volume: Volume) -> tuple[int, int, str | None]:
            _, old, server = volumes.begin_extend(session, context, runtime.settings,
                                                  volume.id, new_size, version)
            return old, volumes.positive_size(new_size), server

        old, size, server_id = await in_session(extend)
        service.submit_extend(volume_id, old, size, server_id)
        return Response(status_code=202)
    if name == "os-volume_upload_image":
        return await _upload(request, in_session, service, context, args)
    if name == "os-set_bootable":
        flag = boolean(_arg(args, "bootable"), "bootable")

        def set_bootable(_session: Session, volume: Volume) -> None:
            context.require_writer()
            volume.bootable = flag

        await in_session(set_bootable)
        return Response(status_code=200)
    if name == "os-update_readonly_flag":
        flag = boolean(_arg(args, "readonly"), "readonly")

        def set_readonly(_session: Session, volume: Volume) -> None:
            context.require_writer()
            if volume.status != AVAILABLE:
                raise InvalidVolume(f"Volume {volume.id} status must be available to change "
                                    f"its read-only flag; it is {volume.status}.")
            volume.readonly = flag

        await in_session(set_readonly)
        return Response(status_code=202)
    if name in ("os-set_image_metadata", "os-unset_image_metadata", "os-show_image_metadata"):
        return JSONResponse(await in_session(lambda s, v: _image_metadata(context, v, name,
                                                                          args)))
    if name == "os-reset_status":
        await in_session(lambda s, v: _reset_status(context, v, args))
        return Response(status_code=202)
    if name == "os-force_delete":
        snapshot_ids = await in_session(lambda s, v: volumes.begin_delete(
            s, context, v.id, cascade=True, force=True)[1])
        service.submit_delete(volume_id, snapshot_ids)
        return Response(status_code=202)
    if name == "os-retype":
        kind = _arg(args, "new_type")
        volumes.check_type(kind)
        return Response(status_code=202)  # to the type it already has: nothing to do
    raise BadRequest(f"There is no such action: {name}")


def _arg(args: Any, key: str) -> Any:
    if not isinstance(args, dict) or key not in args:
        raise InvalidInput(f"'{key}' is a required property")
    return args[key]


def _image_metadata(context: RequestContext, volume: Volume, name: str,
                    args: Any) -> dict[str, Any]:
    meta = dict(volume.image_meta or {})
    if name == "os-show_image_metadata":
        return {"metadata": meta}
    context.require_writer()
    if name == "os-set_image_metadata":
        new = volumes.check_metadata(_arg(args, "metadata"))
        volume.image_meta = {**meta, **new}
        return {"metadata": dict(volume.image_meta)}
    key = _arg(args, "key")
    if key not in meta:
        raise BadRequest(f"Invalid input received: Glance metadata {key!r} cannot be found "
                         f"for volume {volume.id}")
    del meta[key]
    volume.image_meta = meta
    return {}


def _reset_status(context: RequestContext, volume: Volume, args: Any) -> None:
    context.require_admin()
    status = args.get("status") if isinstance(args, dict) else None
    if status is None:
        raise InvalidInput("'status' is a required property")
    if status not in VOLUME_STATUSES:
        raise InvalidInput(f"Invalid status {status!r}")
    volume.status = status


async def _upload(request: Request, in_session: Any, service: VolumeService,
                  context: RequestContext, args: Any) -> Response:
    if not isinstance(args, dict) or not isinstance(args.get("image_name"), str):
        raise InvalidInput("'image_name' is a required property")
    disk_format = check_disk_format(args.get("disk_format", "raw")) or "raw"
    if disk_format not in UPLOAD_FORMATS:
        raise InvalidInput(f"Invalid disk-format {disk_format!r} for an image made from a "
                           f"volume; choose one of {', '.join(UPLOAD_FORMATS)}")
    container = check_container_format(args.get("container_format", "bare")) or "bare"
    if container != "bare":
        raise InvalidInput("kumo writes volumes to images as container_format bare only")
    force = boolean(args.get("force", False), "force")
    version = version_of(request)
    visibility = check_visibility(args.get("visibility", "private")) if version >= (3, 1) \
        else "private"
    protected = boolean(args.get("protected", False), "protected") if version >= (3, 1) \
        else False

    def begin(session: Session, volume: Volume) -> tuple[Volume, str, str | None]:
        context.require_writer()
        allowed = (AVAILABLE, IN_USE) if force else (AVAILABLE,)
        if volume.status not in allowed:
            raise InvalidVolume(f"Volume {volume.id} status must be "
                                f"{' or '.join(allowed)}; it is {volume.status}"
                                + ("" if force else " (use --force for an in-use volume)"))
        entries = attachments_of(session, [volume.id])[volume.id]
        previous = volume.status
        volume.status = "uploading"
        session.flush()
        session.expunge(volume)
        return volume, previous, entries[0].server_id if entries else None

    volume, previous, server_id = await in_session(begin)
    body = {**{k: v for k, v in (volume.image_meta or {}).items() if k not in _NOT_IMAGE},
            "name": args["image_name"], "disk_format": disk_format,
            "container_format": container, "visibility": visibility, "protected": protected,
            "min_disk": volume.size}
    try:
        image = await run_in_threadpool(service.images.reserve, context, body)
    except KumoError:
        await in_session(lambda s, v: setattr(v, "status", previous))
        raise
    service.submit_upload(volume.id, context, image["id"], disk_format, previous, server_id)
    shown = {"id": volume.id, "updated_at": views.iso(volume.updated_at), "status": "uploading",
             "display_description": volume.description, "size": volume.size,
             "volume_type": views.default_type(version), "image_id": image["id"],
             "container_format": container, "disk_format": disk_format,
             "image_name": image["name"], "visibility": visibility, "protected": protected}
    return JSONResponse({"os-volume_upload_image": shown}, status_code=202)


# volume_image_metadata keys that describe the source image, not the new one.
_NOT_IMAGE = {"image_id", "image_name", "disk_format", "container_format", "min_disk",
              "min_ram", "size", "checksum"}
