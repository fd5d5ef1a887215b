"""Nova's os-volume_attachments: `openstack server add volume / remove volume`.

POST reserves the volume and answers 200 at once (with the device it will be); the
compute job then hot-plugs it into a running guest (or leaves it for the next start)
and the volume goes `in-use`. DELETE marks it `detaching` and answers 202; the job
waits for the guest to release it, then it is `available`. Either failure puts the
volume back where it was and records the error on the server's instance action.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from kumo.api.context import RequestContext
from kumo.api.http import read_json
from kumo.api.parts import in_session, runtime_from
from kumo.compute import servers
from kumo.compute import volumes as server_volumes
from kumo.compute.microversion import version_of
from kumo.compute.servers import record_action
from kumo.compute.service import compute_of
from kumo.errors import BadRequest, NotFound
from kumo.volume import attachments
from kumo.volume.service import volume_service_of


def _tag(spec: dict[str, Any], version: tuple[int, int]) -> str | None:
    tag = spec.get("tag")
    if tag is None:
        return None
    if version < (2, 49):
        raise BadRequest("Additional properties are not allowed ('tag' was unexpected)")
    if not isinstance(tag, str) or not 1 <= len(tag) <= 60 or "/" in tag or "," in tag:
        raise BadRequest("Invalid input for field/attribute tag")
    return tag


def _delete_on_termination(spec: dict[str, Any], version: tuple[int, int]) -> bool:
    if "delete_on_termination" not in spec:
        return False
    if version < (2, 79):
        raise BadRequest("Additional properties are not allowed ('delete_on_termination' was "
                         "unexpected)")
    value = spec["delete_on_termination"]
    if not isinstance(value, bool):
        raise BadRequest("Invalid input for field/attribute delete_on_termination")
    return value


async def volume_attachments(request: Request) -> Response:
    server_id, version = request.path_params["id"], version_of(request)
    if request.method == "GET":
        def listed(session: Session, context: RequestContext) -> list[dict[str, Any]]:
            servers.get_server(session, context, server_id)
            return [server_volumes.AttachmentView.of(e).shown(version)
                    for e in attachments.for_server(session, server_id)]

        return JSONResponse({"volumeAttachments": await in_session(request, listed)})
    body = await read_json(request)
    spec = body.get("volumeAttachment") if isinstance(body, dict) else None
    if not isinstance(spec, dict) or not isinstance(spec.get("volumeId"), str):
        raise BadRequest("Invalid input for field/attribute volumeAttachment: 'volumeId' is a "
                         "required property")
    tag, delete = _tag(spec, version), _delete_on_termination(spec, version)
    runtime = runtime_from(request)
    compute = compute_of(runtime)
    volume_service_of(runtime)  # 503 before any record where Block Storage does not run

    def attach(session: Session, context: RequestContext) -> server_volumes.AttachmentView:
        server = servers.get_server(session, context, server_id)
        view = server_volumes.reserve(
            session, context, server, spec["volumeId"], tag=tag, delete_on_termination=delete,
            max_volumes=runtime.settings.compute.num_pcie_ports)
        record_action(session, server, "attach_volume", context)
        return view

    view = await in_session(request, attach)
    compute.submit_attach(server_id, view.attachment_id)
    return JSONResponse({"volumeAttachment": view.shown(version)})


async def volume_attachment(request: Request) -> Response:
    server_id, volume_id = request.path_params["id"], request.path_params["volume_id"]
    version = version_of(request)
    if request.method == "GET":
        def shown(session: Session, context: RequestContext) -> dict[str, Any]:
            servers.get_server(session, context, server_id)
            entry = attachments.find(session, server_id, volume_id)
            if entry is None:
                raise NotFound(f"Instance {server_id} is not attached to volume {volume_id}")
            return server_volumes.AttachmentView.of(entry).shown(version)

        return JSONResponse({"volumeAttachment": await in_session(request, shown)})
    if request.method == "PUT":
        return await _update(request, server_id, volume_id, version)
    compute = compute_of(runtime_from(request))

    def detach(session: Session, context: RequestContext) -> str:
        server = servers.get_server(session, context, server_id)
        view = server_volumes.begin_detach(session, context, server, volume_id)
        record_action(session, server, "detach_volume", context)
        return view.attachment_id

    attachment_id = await in_session(request, detach)
    compute.submit_detach(server_id, attachment_id)
    return Response(status_code=202)


async def _update(request: Request, server_id: str, volume_id: str,
                  version: tuple[int, int]) -> Response:
    """PUT: only `delete_on_termination` of the same volume (2.85); swapping volumes is not
    supported."""
    body = await read_json(request)
    spec = body.get("volumeAttachment") if isinstance(body, dict) else None
    if not isinstance(spec, dict) or spec.get("volumeId") != volume_id:
        raise BadRequest("kumo cannot swap a server's volume for another; detach one and "
                         "attach the other")
    if version < (2, 85) or "delete_on_termination" not in spec:
        raise BadRequest("Only delete_on_termination can be changed (microversion 2.85)")
    delete = _delete_on_termination(spec, version)

    def change(session: Session, context: RequestContext) -> None:
        context.require_writer()
        servers.get_server(session, context, server_id)
        entry = attachments.find(session, server_id, volume_id)
        if entry is None:
            raise NotFound(f"Instance {server_id} is not attached to volume {volume_id}")
        entry.delete_on_termination = delete

    await in_session(request, change)
    return Response(status_code=202)
