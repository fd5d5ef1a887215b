"""Cold migration: a server's disk moves to another host, as nova's `migrate` does.

1. API (`migrate` action, admin): the filter scheduler picks a host other than the
   server's own (or checks the one asked for); a `migrations` row records both;
   task_state `resize_prep`. The destination's resources count as used from here on.
2. Source agent (`submit_migrate_out`): powers the guest off; `resize_migrating`; hands
   over to the destination's queue.
3. Destination agent (`submit_migrate_in`): copies the disk from the source over the
   signed agent link, fetches the image into its own `_base` and points the overlay at
   it, boots the guest if it ran before; the server is now on this host, VERIFY_RESIZE.
4. `confirmResize`: the source removes its copy. `revertResize`: the destination
   removes its copy and the server boots where it was.

Any failure puts the server back where it was, with a fault that says why.
"""

from __future__ import annotations

import json
import logging
import shutil
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumo.agent.models import Migration
from kumo.api.context import RequestContext, context_of
from kumo.api.parts import in_session
from kumo.compute import servers
from kumo.compute.models import ACTIVE, ERROR, RESIZED, RUNNING, STOPPED, Server
from kumo.compute.servers import finish_action, record_action, set_fault
from kumo.db.base import utcnow
from kumo.db.engine import session_scope
from kumo.diskformat import qemuimg
from kumo.errors import BadRequest, Conflict, KumoError, NotFound
from kumo.hypervisor.cache_manager import INSTANCE_RECORD

if TYPE_CHECKING:
    from kumo.agent.process import AgentCompute
    from kumo.compute.service import ComputeService

log = logging.getLogger("kumo.migration")

ACTIVE_STATES = ("pre-migrating", "migrating", "finished")
NO_HOST_FOR_MIGRATE = "No valid host was found. No valid host found for cold migrate."


def open_migration(session: Session, server_id: str) -> Migration | None:
    """The server's migration that is not confirmed, reverted or failed yet."""
    return session.scalar(select(Migration).where(
        Migration.server_id == server_id, Migration.status.in_(ACTIVE_STATES))
        .order_by(Migration.id.desc()))


def incoming(session: Session, host: str) -> list[Migration]:
    """Migrations on their way to `host` (their server counts on it already)."""
    return list(session.scalars(select(Migration).where(
        Migration.dest_compute == host, Migration.status.in_(("pre-migrating", "migrating")))))


# -- the API side ---------------------------------------------------------------------

async def migrate(request: Request, in_session_: Any, compute: ComputeService,
                  context: RequestContext, server_id: str, args: Any) -> Response:
    """POST /servers/{id}/action {"migrate": null | {"host": name}} (admin)."""
    from kumo.agent.dispatch import JobDispatch

    context.require_admin()
    wanted = args.get("host") if isinstance(args, dict) else None
    if args is not None and not isinstance(args, dict):
        raise BadRequest("Invalid input for field/attribute migrate")
    if not isinstance(compute, JobDispatch):
        await in_session_(lambda s, srv: servers.check_action(context, srv, "resize"))
        raise BadRequest(f"{NO_HOST_FOR_MIGRATE} This cloud has one host (kumo up on "
                         "SQLite); cold migration needs compute agents on PostgreSQL.")
    await in_session_(lambda s, srv: servers.check_action(context, srv, "resize"))
    compute.start_migration(context, server_id, wanted)
    return Response(status_code=202)


def migration_view(entry: Migration) -> dict[str, Any]:
    return {"id": entry.id, "uuid": entry.uuid, "instance_uuid": entry.server_id,
            "source_compute": entry.source_compute, "dest_compute": entry.dest_compute,
            "source_node": entry.source_compute, "dest_node": entry.dest_compute,
            "dest_host": entry.dest_compute, "status": entry.status,
            "migration_type": entry.migration_type, "old_instance_type_id": entry.flavor_id,
            "new_instance_type_id": entry.flavor_id, "project_id": entry.project_id,
            "user_id": entry.user_id, "created_at": entry.created_at.isoformat(),
            "updated_at": entry.updated_at.isoformat()}


async def list_migrations(request: Request) -> Response:
    """GET /os-migrations (admin): nova's list, filtered by instance_uuid/host/status."""
    query = request.query_params

    def work(session: Session, context: RequestContext) -> list[dict[str, Any]]:
        context.require_admin()
        stmt = select(Migration).order_by(Migration.id.desc())
        if "instance_uuid" in query:
            stmt = stmt.where(Migration.server_id == query["instance_uuid"])
        if "status" in query:
            stmt = stmt.where(Migration.status == query["status"])
        if "host" in query:
            stmt = stmt.where((Migration.source_compute == query["host"])
                              | (Migration.dest_compute == query["host"]))
        return [migration_view(m) for m in session.scalars(stmt)]

    context_of(request)
    return JSONResponse({"migrations": await in_session(request, work)})


def routes(prefix: str) -> list[Route]:
    return [Route(prefix + "/os-migrations", list_migrations)]


# -- the hosts' side --------------------------------------------------------------------

def _set(compute: AgentCompute, migration_id: int, status: str) -> None:
    with session_scope(compute.runtime.sessions) as session:
        entry = session.get(Migration, migration_id)
        if entry is not None:
            entry.status = status


def _load(compute: AgentCompute, migration_id: int) -> Migration:
    with session_scope(compute.runtime.sessions) as session:
        entry = session.get(Migration, migration_id)
        if entry is None:
            raise NotFound(f"migration {migration_id} is gone")
        session.expunge(entry)
        return entry


def migrate_out(compute: AgentCompute, server_id: str, migration_id: int) -> None:
    """Source: stop the guest and hand over to the destination."""
    entry = _load(compute, migration_id)
    try:
        if entry.was_running:
            compute.hypervisor.power_off(server_id, graceful=True, timeout=60)
        _set(compute, migration_id, "migrating")
        compute._update(server_id, lambda s: setattr(s, "task_state", "resize_migrating"))
        compute.jobs.defer(entry.dest_compute, server_id, "submit_migrate_in", [migration_id])
    except Exception as exc:
        fail(compute, server_id, entry, exc)


def migrate_in(compute: AgentCompute, server_id: str, migration_id: int) -> None:
    """Destination: copy the disk, rebase it on our `_base`, boot it if it ran before."""
    from kumo.agent.link import agent_call, stream_from

    entry = _load(compute, migration_id)
    hypervisor: Any = compute.hypervisor
    folder = hypervisor.folder(server_id)
    try:
        record = json.loads(agent_call(compute.runtime, entry.source_compute,
                                       f"/v1/servers/{server_id}/record").text)
        folder.mkdir(parents=True, exist_ok=True)
        disk = folder / "disk"
        stream_from(compute.runtime, entry.source_compute, f"/v1/servers/{server_id}/disk",
                    disk)
        if record.get("base"):  # an overlay: the same image, from our own cache
            base = hypervisor.cache.ensure_base(record["image_id"])
            qemuimg.rebase_in_place(disk, base.path, base.format)
            record["base"] = str(base.path)
        (folder / INSTANCE_RECORD).write_text(json.dumps(record))

        def arrived(server: Server) -> None:
            server.host = compute.host
            server.availability_zone = compute.runtime.settings.agent.default_availability_zone

        server = compute._update(server_id, arrived)
        if server is None:
            raise NotFound(f"server {server_id} was deleted during its migration")
        status = hypervisor.power_on(compute._spec(server)) if entry.was_running else None
    except Exception as exc:
        shutil.rmtree(folder, ignore_errors=True)
        fail(compute, server_id, entry, exc)
        return

    def finished(server: Server) -> None:
        if status is not None:
            compute._running(server, status)
        else:
            server.power_state, server.host_ports = 4, {}  # SHUTDOWN
        server.vm_state, server.task_state = RESIZED, None

    compute._update(server_id, finished)
    _set(compute, migration_id, "finished")
    with session_scope(compute.runtime.sessions) as session:
        finish_action(session, server_id, "migrate")
    log.info("server %s migrated from %s to %s", server_id, entry.source_compute, compute.host)


def fail(compute: AgentCompute, server_id: str, entry: Migration, exc: Exception) -> None:
    """Back to the source, as the server was, with a fault that says why."""
    message = exc.message if isinstance(exc, KumoError) else f"{type(exc).__name__}: {exc}"
    log.warning("migration of server %s failed: %s", server_id, message)
    _set(compute, entry.id, "error")

    def back(server: Server) -> None:
        server.host, server.task_state = entry.source_compute, None
        server.vm_state = STOPPED if not entry.was_running else ERROR
        set_fault(server, f"cold migration to {entry.dest_compute} failed: {message}")

    compute._update(server_id, back)
    with session_scope(compute.runtime.sessions) as session:
        finish_action(session, server_id, "migrate", message)
    if entry.was_running:  # it was running where it was: run it there again
        compute.jobs.defer(entry.source_compute, server_id, "submit_reboot", [True])


def confirm(compute: AgentCompute, server_id: str, migration_id: int) -> None:
    """Source: the server stays where it went; remove what is left here."""
    compute.hypervisor.destroy(server_id)
    _set(compute, migration_id, "confirmed")

    def confirmed(server: Server) -> None:
        server.vm_state = ACTIVE if server.power_state == RUNNING else STOPPED
        server.task_state = None

    compute._update(server_id, confirmed)
    with session_scope(compute.runtime.sessions) as session:
        finish_action(session, server_id, "confirmResize")


def revert(compute: AgentCompute, server_id: str, migration_id: int) -> None:
    """Destination: remove our copy; the source boots the one it kept."""
    entry = _load(compute, migration_id)
    compute.hypervisor.destroy(server_id)
    compute._update(server_id, lambda s: setattr(s, "host", entry.source_compute))
    compute.jobs.defer(entry.source_compute, server_id, "submit_migrate_reverted",
                       [migration_id])


def reverted(compute: AgentCompute, server_id: str, migration_id: int) -> None:
    """Source: the server is back; it runs again if it ran before."""
    entry = _load(compute, migration_id)
    server = compute._update(server_id, lambda s: None)
    if server is None:
        return
    try:
        status = compute.hypervisor.power_on(compute._spec(server)) if entry.was_running \
            else None
    except Exception as exc:
        compute._fail(server_id, "revertResize", exc, to_error=True)
        _set(compute, migration_id, "error")
        return

    def back(record: Server) -> None:
        if status is not None:
            compute._running(record, status)
        record.vm_state = ACTIVE if status is not None else STOPPED
        record.task_state = None

    compute._update(server_id, back)
    _set(compute, migration_id, "reverted")
    with session_scope(compute.runtime.sessions) as session:
        finish_action(session, server_id, "revertResize")


def begin(session: Session, context: RequestContext, server: Server, dest: str) -> Migration:
    """Record the migration and mark the server busy (the API's part of step 1)."""
    if open_migration(session, server.id) is not None:
        raise Conflict(f"Instance {server.id} is being migrated already")
    entry = Migration(server_id=server.id, source_compute=server.host or "",
                      dest_compute=dest, flavor_id=server.flavor_id,
                      project_id=server.project_id, user_id=context.user_id,
                      was_running=server.power_state == RUNNING)
    session.add(entry)
    server.task_state = "resize_prep"
    record_action(session, server, "migrate", context)
    session.flush()
    entry.updated_at = utcnow()
    return entry
