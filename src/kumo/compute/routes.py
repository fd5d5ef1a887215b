"""Nova v2.1 routes: version discovery, flavors, key pairs, servers and their actions."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumo.agent import migration
from kumo.api.context import RequestContext
from kumo.api.errors import Flavor as ErrorShape
from kumo.api.http import read_json
from kumo.api.parts import in_session, part_app, runtime_from
from kumo.compute import (
    extensions,
    flavor_extras,
    flavors,
    hosts,
    keypairs,
    quota_routes,
    quotas,
    server_extras,
    server_groups,
    servers,
    usage,
    views,
)
from kumo.compute import volumes as server_volumes
from kumo.compute.actions import server_action
from kumo.compute.block_devices import VolumeReserver
from kumo.compute.image_proxy import routes as image_routes
from kumo.compute.microversion import MAX_VERSION, MIN_VERSION, MicroversionMiddleware, text
from kumo.compute.microversion import version_of as microversion
from kumo.compute.models import InstanceAction, Server
from kumo.compute.service import compute_of
from kumo.compute.volume_attachments import volume_attachment, volume_attachments
from kumo.console.nova import create_remote_console
from kumo.errors import BadRequest, NotFound
from kumo.hypervisor.routes import routes as cache_routes
from kumo.network import nics
from kumo.network.models import SecurityGroup
from kumo.runtime import Runtime
from kumo.volume.images import VolumeImages

T = TypeVar("T")


def base_url(request: Request) -> str:
    return f"{runtime_from(request).settings.base_url}/compute/v2.1"




def version_document(request: Request, legacy: bool = False) -> dict[str, Any]:
    """v2.1 (microversions), or nova's v2.0 (the same API without them, kept for old clients)."""
    root = f"{runtime_from(request).settings.base_url}/compute"
    return {
        "id": "v2.0" if legacy else "v2.1", "status": "SUPPORTED" if legacy else "CURRENT",
        "version": "" if legacy else text(MAX_VERSION),
        "min_version": "" if legacy else text(MIN_VERSION),
        "updated": "2011-01-21T11:33:21Z" if legacy else "2013-07-23T11:33:21Z",
        "links": [{"rel": "self", "href": root + ("/v2/" if legacy else "/v2.1/")},
                  {"rel": "describedby", "type": "text/html",
                   "href": "https://docs.openstack.org/"}],
        "media-types": [{"base": "application/json",
                         "type": "application/vnd.openstack.compute+json;version="
                                 + ("2" if legacy else "2.1")}],
    }


async def versions(request: Request) -> Response:
    shown = [version_document(request, legacy=True), version_document(request)]
    for entry in shown:
        del entry["media-types"]
        entry["links"] = entry["links"][:1]
    return JSONResponse({"versions": shown})


async def version(request: Request) -> Response:
    legacy = request.url.path.rstrip("/").endswith("/v2")
    return JSONResponse({"version": version_document(request, legacy)})


# -- flavors -----------------------------------------------------------------

async def list_flavors(request: Request) -> Response:
    detail = request.url.path.endswith("/detail")
    mv, base = microversion(request), base_url(request)
    query = dict(request.query_params)
    found = await in_session(request, lambda s, c: flavors.list_flavors(s, c, query))
    return JSONResponse({"flavors": [views.flavor_view(f, base, mv, detail) for f in found]})


async def show_flavor(request: Request) -> Response:
    flavor_id = request.path_params["flavor_id"]
    found = await in_session(request, lambda s, c: flavor_extras.visible_flavor(s, c, flavor_id))
    return JSONResponse({"flavor": views.flavor_view(found, base_url(request),
                                                     microversion(request))})


async def create_flavor(request: Request) -> Response:
    body = await read_json(request)
    mv = microversion(request)
    spec = body.get("flavor") if isinstance(body, dict) else None
    if mv < (2, 55) and isinstance(spec, dict) and "description" in spec:
        raise BadRequest("Additional properties are not allowed ('description' was unexpected)")
    found = await in_session(request, lambda s, c: flavors.create_flavor(s, c, body))
    return JSONResponse({"flavor": views.flavor_view(found, base_url(request), mv)})


async def delete_flavor(request: Request) -> Response:
    flavor_id = request.path_params["flavor_id"]
    await in_session(request, lambda s, c: flavors.delete_flavor(s, c, flavor_id))
    return Response(status_code=202)


# -- key pairs ---------------------------------------------------------------

def _keypair_user(request: Request, mv: tuple[int, int]) -> str | None:
    return request.query_params.get("user_id") if mv >= (2, 10) else None


async def list_keypairs(request: Request) -> Response:
    mv, query = microversion(request), request.query_params
    limit = marker = None
    if mv >= (2, 35):
        marker = query.get("marker")
        if "limit" in query:
            try:
                limit = int(query["limit"])
            except ValueError:
                raise BadRequest("Invalid limit: expected a whole number") from None
    user = _keypair_user(request, mv)
    found = await in_session(
        request, lambda s, c: keypairs.list_keypairs(s, c, user, limit, marker))
    body: dict[str, Any] = {"keypairs": [{"keypair": views.keypair_view(k, mv)} for k in found]}
    if limit is not None and found and len(found) == limit:
        body["keypairs_links"] = [{"rel": "next", "href": f"{base_url(request)}/os-keypairs?"
                                   f"limit={limit}&marker={found[-1].name}"}]
    return JSONResponse(body)


async def create_keypair(request: Request) -> Response:
    mv = microversion(request)
    body = await read_json(request)
    spec = body.get("keypair") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise BadRequest("Invalid input: 'keypair' is a required property")
    key_type = spec.get("type", "ssh") if mv >= (2, 2) else "ssh"
    user = spec.get("user_id") if mv >= (2, 10) else None

    def work(session: Session, context: RequestContext) -> dict[str, Any]:
        new = keypairs.create_keypair(
            session, context, spec.get("name"), public_key=spec.get("public_key"),
            key_type=key_type, user_id=user, allow_generate=mv < (2, 92),
            quota=runtime_from(request).settings.quota)
        shown = views.keypair_view(new.record, mv)
        shown["user_id"] = new.record.user_id
        if new.private_key is not None:
            shown["private_key"] = new.private_key
        return shown

    shown = await in_session(request, work)
    return JSONResponse({"keypair": shown}, status_code=201 if mv >= (2, 2) else 200)


async def show_keypair(request: Request) -> Response:
    mv, name = microversion(request), request.path_params["name"]
    user = _keypair_user(request, mv)
    found = await in_session(request, lambda s, c: keypairs.get_keypair(s, c, name, user))
    return JSONResponse({"keypair": views.keypair_view(found, mv, full=True)})


async def delete_keypair(request: Request) -> Response:
    mv, name = microversion(request), request.path_params["name"]
    user = _keypair_user(request, mv)
    await in_session(request, lambda s, c: keypairs.delete_keypair(s, c, name, user))
    return Response(status_code=204 if mv >= (2, 2) else 202)


# -- servers -----------------------------------------------------------------

def group_names(session: Session, server: Server) -> list[str]:
    """The groups of the server's ports, as nova shows them (portless: those it asked for)."""
    asked = list(server.security_group_ids or [])
    ids = nics.server_group_ids(session, server.id)
    if ids is None:
        ids = asked
    else:  # in the order the server got them (create, addSecurityGroup), then others
        ids = sorted(ids, key=lambda g: asked.index(g) if g in asked else len(asked))
    if not ids:
        return []
    rows = session.execute(select(SecurityGroup.id, SecurityGroup.name).where(
        SecurityGroup.id.in_(ids))).all()
    names = dict(rows)
    return [names[g] for g in ids if g in names]


def server_view(request: Request, session: Session, context: RequestContext, server: Server,
                server_nics: list[nics.Nic], **kwargs: Any) -> dict[str, Any]:
    """views.server_view with the server's groups and NICs (addresses)."""
    return views.server_view(server, base_url(request), microversion(request), context,
                             group_names(session, server), nics=server_nics,
                             user_mode=nics.user_mode(runtime_from(request), server_nics),
                             **kwargs)


def volume_reserver(runtime: Runtime) -> VolumeReserver | None:
    """Server create's volumes, where this process runs Block Storage (`kumo up`)."""
    if "volume" not in runtime.services:
        return None
    return VolumeReserver(runtime.settings, VolumeImages(runtime))


async def create_server(request: Request) -> Response:
    body = await read_json(request)
    mv, base = microversion(request), base_url(request)
    runtime = runtime_from(request)
    compute = compute_of(runtime)
    spec = body.get("server") if isinstance(body, dict) else None
    user_data = None
    if isinstance(spec, dict) and spec.get("user_data") is not None:
        from kumo.metadata.userdata import validate_user_data

        user_data = validate_user_data(spec["user_data"])

    def work(session: Session, context: RequestContext) -> servers.Created:
        return servers.create_server(session, context, body, mv, compute.images, user_data,
                                     runtime.settings.quota, runtime.settings.network,
                                     volume_reserver(runtime), compute.scheduling_zones())

    created = await in_session(request, work)
    nics.notify(runtime)
    for server in created.servers:
        if server.id not in created.faults:
            compute.submit_spawn(server.id)
    if isinstance(spec, dict) and spec.get("return_reservation_id") in (True, "true", "True"):
        return JSONResponse({"reservation_id": created.reservation_id}, status_code=202)
    first = created.servers[0].id
    shown = {"id": first, "links": views.links(base, "servers", first),
             "OS-DCF:diskConfig": created.servers[0].disk_config,
             "security_groups": [{"name": ref} for ref in created.group_refs],
             "adminPass": created.admin_pass}
    return JSONResponse({"server": shown}, status_code=202,
                        headers={"Location": f"{base}/servers/{first}"})


_LIST_FILTERS = {"all_tenants", "project_id", "tenant_id", "name", "status", "image", "flavor",
                 "key_name", "user_id", "marker", "limit", "sort_key", "sort_dir", "deleted",
                 "ip", "ip6", "host", "changes-since", "changes-before", "reservation_id",
                 "locked", "description", "tags", "tags-any", "not-tags", "not-tags-any",
                 "availability_zone", "config_drive", "access_ip_v4", "access_ip_v6",
                 "auto_disk_config", "progress", "uuid", "vm_state", "task_state",
                 "power_state", "launched_at", "terminated_at", "created_at", "display_name",
                 "hostname", "node", "kernel_id", "ramdisk_id", "launch_index",
                 "pinned_availability_zone"}


async def list_servers(request: Request) -> Response:
    detail = request.url.path.endswith("/detail")
    mv = microversion(request)
    query = dict(request.query_params)
    unknown = set(query) - _LIST_FILTERS
    if unknown and mv >= (2, 75):
        raise BadRequest(f"Invalid input for query parameters {', '.join(sorted(unknown))}.")
    def work(session: Session, context: RequestContext) -> list[dict[str, Any]]:
        found = servers.list_servers(session, context, query, mv)
        by_server = nics.nics_of(session, [s.id for s in found]) if detail else {}
        volumes = server_volumes.list_for(session, [s.id for s in found]) if detail else {}
        return [server_view(request, session, context, s, by_server.get(s.id, []),
                            detail=detail, volumes=volumes.get(s.id, [])) for s in found]

    return JSONResponse({"servers": await in_session(request, work)})


async def show_server(request: Request) -> Response:
    server_id = request.path_params["id"]

    def work(session: Session, context: RequestContext) -> dict[str, Any]:
        server = servers.get_server(session, context, server_id)
        return server_view(request, session, context, server,
                           nics.server_nics(session, server.id), show=True,
                           server_groups=server_groups.groups_of(session, server.id),
                           volumes=server_volumes.list_for(session, [server.id])[server.id])

    return JSONResponse({"server": await in_session(request, work)})


async def update_server(request: Request) -> Response:
    body = await read_json(request)
    mv, server_id = microversion(request), request.path_params["id"]

    def work(session: Session, context: RequestContext) -> dict[str, Any]:
        server = servers.update_server(session, context, server_id, body, mv)
        return server_view(request, session, context, server,
                           nics.server_nics(session, server.id), show=True, basic=mv < (2, 75),
                           server_groups=server_groups.groups_of(session, server.id),
                           volumes=server_volumes.list_for(session, [server.id])[server.id])

    shown = await in_session(request, work)
    _invalidate(request, server_id)
    return JSONResponse({"server": shown})


async def delete_server(request: Request) -> Response:
    server_id = request.path_params["id"]
    runtime = runtime_from(request)
    compute = compute_of(runtime)
    soft = runtime.settings.compute.reclaim_instance_interval > 0

    def work(session: Session, context: RequestContext) -> str | None:
        server = servers.get_server(session, context, server_id)
        if not servers.begin_delete(session, context, server, soft=soft):
            return None
        return server.task_state

    task = await in_session(request, work)
    if task == "soft-deleting":
        compute.submit_soft_delete(server_id)
    elif task is not None:
        compute.submit_delete(server_id)
    return Response(status_code=204)


async def action(request: Request) -> Response:
    body = await read_json(request)
    return await server_action(request, request.path_params["id"], body)


# -- server metadata ---------------------------------------------------------

def _invalidate(request: Request, server_id: str) -> None:
    metadata = runtime_from(request).services.get("metadata")
    if metadata is not None and hasattr(metadata, "invalidate"):
        metadata.invalidate(server_id)


async def server_metadata(request: Request) -> Response:
    server_id, quota = request.path_params["id"], runtime_from(request).settings.quota
    body = await read_json(request) if request.method in ("POST", "PUT") else None

    def work(session: Session, context: RequestContext) -> dict[str, str]:
        server = servers.get_server(session, context, server_id)
        if body is None:
            return dict(server.meta or {})
        context.require_writer()
        servers.check_unlocked(context, server)
        meta = body.get("metadata") if isinstance(body, dict) else None
        new = servers.check_metadata(meta)
        merged = new if request.method == "PUT" else {**(server.meta or {}), **new}
        quotas.check_metadata(session, quota, server.project_id, len(merged))
        server.meta = merged
        return dict(server.meta)

    meta = await in_session(request, work)
    if body is not None:
        _invalidate(request, server_id)
    return JSONResponse({"metadata": meta})


async def server_metadata_item(request: Request) -> Response:
    server_id, key = request.path_params["id"], request.path_params["key"]
    quota = runtime_from(request).settings.quota
    body = await read_json(request) if request.method == "PUT" else None

    def work(session: Session, context: RequestContext) -> dict[str, str] | None:
        server = servers.get_server(session, context, server_id)
        meta = dict(server.meta or {})
        if request.method == "GET":
            if key not in meta:
                raise NotFound("Metadata item was not found")
            return {key: meta[key]}
        context.require_writer()
        if request.method == "DELETE":
            if key not in meta:
                raise NotFound("Metadata item was not found")
            del meta[key]
            server.meta = meta
            return None
        item = body.get("meta") if isinstance(body, dict) else None
        if not isinstance(item, dict) or len(item) != 1 or key not in item:
            raise BadRequest("Request body and URI mismatch")
        meta.update(servers.check_metadata(item))
        quotas.check_metadata(session, quota, server.project_id, len(meta))
        server.meta = servers.check_metadata(meta)
        return {key: meta[key]}

    shown = await in_session(request, work)
    if request.method != "GET":
        _invalidate(request, server_id)
    if shown is None:
        return Response(status_code=204)
    return JSONResponse({"meta": shown})


# -- instance actions --------------------------------------------------------

async def instance_actions(request: Request) -> Response:
    mv, server_id = microversion(request), request.path_params["id"]
    wanted = request.path_params.get("request_id")

    def work(session: Session, context: RequestContext) -> Any:
        # 2.21: the actions of a deleted server stay readable
        servers.get_server(session, context, server_id, deleted=mv >= (2, 21))
        stmt = select(InstanceAction).where(InstanceAction.server_id == server_id)
        if wanted is not None:
            entry = session.scalar(stmt.where(InstanceAction.request_id == wanted))
            if entry is None:
                raise NotFound(f"Action {wanted} could not be found.")
            shown = views.action_view(entry, mv)
            shown["events"] = [{"event": f"compute_{entry.action}",
                                "start_time": shown["start_time"],
                                "finish_time": views.usec(entry.finish_time),
                                "result": entry.result}]
            return {"instanceAction": shown}
        entries = session.scalars(stmt.order_by(InstanceAction.id.desc()))
        return {"instanceActions": [views.action_view(e, mv) for e in entries]}

    return JSONResponse(await in_session(request, work))


def build_app(runtime: Runtime) -> Starlette:
    v = "/v2.1"
    routes = [
        Route("/", versions), Route(v, version), Route(v + "/", version),
        Route("/v2", version), Route("/v2/", version),
        Route(v + "/flavors", list_flavors), Route(v + "/flavors/detail", list_flavors),
        Route(v + "/flavors", create_flavor, methods=["POST"]),
        Route(v + "/flavors/{flavor_id}", show_flavor),
        Route(v + "/flavors/{flavor_id}", delete_flavor, methods=["DELETE"]),
        Route(v + "/os-keypairs", list_keypairs),
        Route(v + "/os-keypairs", create_keypair, methods=["POST"]),
        Route(v + "/os-keypairs/{name}", show_keypair),
        Route(v + "/os-keypairs/{name}", delete_keypair, methods=["DELETE"]),
        Route(v + "/servers", list_servers), Route(v + "/servers/detail", list_servers),
        Route(v + "/servers", create_server, methods=["POST"]),
        Route(v + "/servers/{id}", show_server),
        Route(v + "/servers/{id}", update_server, methods=["PUT"]),
        Route(v + "/servers/{id}", delete_server, methods=["DELETE"]),
        Route(v + "/servers/{id}/action", action, methods=["POST"]),
        Route(v + "/servers/{id}/metadata", server_metadata, methods=["GET", "POST", "PUT"]),
        Route(v + "/servers/{id}/metadata/{key}", server_metadata_item,
              methods=["GET", "PUT", "DELETE"]),
        Route(v + "/servers/{id}/os-instance-actions", instance_actions),
        Route(v + "/servers/{id}/remote-consoles", create_remote_console, methods=["POST"]),
        Route(v + "/servers/{id}/os-volume_attachments", volume_attachments,
              methods=["GET", "POST"]),
        Route(v + "/servers/{id}/os-volume_attachments/{volume_id}", volume_attachment,
              methods=["GET", "PUT", "DELETE"]),
        Route(v + "/servers/{id}/os-instance-actions/{request_id}", instance_actions),
        *cache_routes(),
        *flavor_extras.routes(v), *server_groups.routes(v), *quota_routes.routes(v),
        *hosts.routes(v), *usage.routes(v), *image_routes(v),
        *server_extras.routes(v), *extensions.routes(v), *migration.routes(v),
    ]
    app = part_app(runtime, routes, ErrorShape.COMPUTE)
    app.add_middleware(MicroversionMiddleware)
    return app
