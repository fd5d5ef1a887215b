"""The compute jobs behind nova's other server actions, and the states they lead to.

Each `submit_*` runs one job on the service's pool (one job at a time per server);
the API has already checked the state and set the task state. A job asks the
hypervisor to act on the guest, then moves the record on in nova's states:

| action | task state | ends in |
|---|---|---|
| pause / unpause | pausing / unpausing | PAUSED / ACTIVE |
| suspend / resume | suspending / resuming | SUSPENDED / ACTIVE |
| rebuild | rebuilding | ACTIVE (SHUTOFF if it was stopped) |
| resize | resize_prep | VERIFY_RESIZE (vm_state resized) |
| confirmResize / revertResize | resize_confirming / resize_reverting | ACTIVE or SHUTOFF |
| rescue / unrescue | rescuing / unrescuing | RESCUE / ACTIVE |
| shelve | shelving, shelving_image_uploading | SHELVED_OFFLOADED (or SHELVED) |
| unshelve | unshelving | ACTIVE |
| delete with reclaim_instance_interval | soft-deleting | SOFT_DELETED, reclaimed later |
| restore | restoring | ACTIVE |
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from kumo.api.context import RequestContext
from kumo.compute.models import (
    ACTIVE,
    NOSTATE,
    PAUSED,
    PAUSED_VM,
    RESCUED,
    RESIZED,
    RUNNING,
    SHELVED,
    SHELVED_OFFLOADED,
    SHUTDOWN,
    SOFT_DELETED,
    STOPPED,
    SUSPENDED,
    SUSPENDED_VM,
    Server,
)
from kumo.compute.servers import record_action
from kumo.compute.views import aware
from kumo.db.base import utcnow
from kumo.db.engine import session_scope
from kumo.errors import KumoError
from kumo.hypervisor.driver import GuestSpec, GuestStatus, Hypervisor

if TYPE_CHECKING:
    from kumo.compute.images import ImagePort
    from kumo.runtime import Runtime

log = logging.getLogger("kumo.compute")

FLAVOR_FIELDS = ("flavor_id", "flavor_name", "vcpus", "memory_mb", "root_gb", "ephemeral_gb",
                 "swap_mb", "flavor_extra_specs")


def on_guest(act: Callable[[str], None]) -> Callable[[Server], GuestStatus | None]:
    """A job step that acts on the guest and reports no new status."""
    def step(server: Server) -> GuestStatus | None:
        act(server.id)
        return None

    return step


def flavor_of(server: Server) -> dict[str, Any]:
    return {name: getattr(server, name) for name in FLAVOR_FIELDS}


class ServerLifecycle:
    """Mixed into `ComputeService`."""

    if TYPE_CHECKING:
        runtime: Runtime
        host: str
        images: ImagePort
        _locks: dict[str, threading.Lock]
        _guard: threading.Lock

        @property
        def hypervisor(self) -> Hypervisor: ...
        def _submit(self, server_id: str, job: Callable[[str], None]) -> Future[None]: ...
        def _spec(self, server: Server) -> GuestSpec: ...
        def _update(self, server_id: str, change: Callable[[Server], None]) -> Server | None: ...
        def _fail(self, server_id: str, action: str, exc: Exception, *,
                  to_error: bool) -> None: ...
        def _finish(self, server_id: str, action: str) -> None: ...
        def _running(self, server: Server, status: GuestStatus) -> None: ...
        def _snapshot(self, server_id: str, context: RequestContext, image_id: str,
                      action: str = "createImage",
                      after: Callable[[], None] | None = None) -> None: ...
        def submit_delete(self, server_id: str) -> Future[None]: ...
        def power_off_quietly(self, server_id: str) -> None: ...

    # -- helpers ---------------------------------------------------------------

    def _act(self, server_id: str, action: str, work: Callable[[Server], GuestStatus | None],
             done: Callable[[Server, GuestStatus | None], None], *,
             to_error: bool = False, undo: Callable[[Server], None] | None = None) -> None:
        """Run `work` on the guest; on success apply `done`, else the fault (and `undo`)."""
        server = self._update(server_id, lambda s: None)
        if server is None:
            return
        try:
            status = work(server)
        except Exception as exc:
            if undo is not None:
                self._update(server_id, undo)
            self._fail(server_id, action, exc, to_error=to_error)
            return

        def apply(record: Server) -> None:
            record.task_state = None
            done(record, status)

        self._update(server_id, apply)
        self._finish(server_id, action)

    def _active(self, server: Server, status: GuestStatus | None) -> None:
        if status is not None:
            self._running(server, status)

    def _stopped(self, server: Server, _status: GuestStatus | None = None) -> None:
        server.vm_state, server.power_state, server.host_ports = STOPPED, SHUTDOWN, {}

    # -- pause, suspend ----------------------------------------------------------

    def submit_pause(self, server_id: str, pause: bool) -> Future[None]:
        def done(server: Server, _status: GuestStatus | None) -> None:
            server.vm_state = PAUSED_VM if pause else ACTIVE
            server.power_state = PAUSED if pause else RUNNING

        def job(sid: str) -> None:
            action = self.hypervisor.pause if pause else self.hypervisor.unpause
            self._act(sid, "pause" if pause else "unpause", on_guest(action), done)

        return self._submit(server_id, job)

    def submit_suspend(self, server_id: str) -> Future[None]:
        def done(server: Server, _status: GuestStatus | None) -> None:
            server.vm_state, server.power_state, server.host_ports = SUSPENDED_VM, SUSPENDED, {}

        return self._submit(server_id, lambda sid: self._act(
            sid, "suspend", on_guest(self.hypervisor.suspend), done))

    def submit_resume(self, server_id: str) -> Future[None]:
        return self._submit(server_id, lambda sid: self._act(
            sid, "resume", lambda s: self.hypervisor.resume(self._spec(s)), self._active))

    # -- rebuild -------------------------------------------------------------------

    def submit_rebuild(self, server_id: str, start: bool) -> Future[None]:
        """The record already names the new image (and name, metadata, ...)."""
        def done(server: Server, status: GuestStatus | None) -> None:
            server.fault_code = server.fault_message = server.fault_created = None
            if start:
                self._active(server, status)
            else:
                self._stopped(server)
            server.launched_at = utcnow()

        def work(server: Server) -> GuestStatus:
            config = self.runtime.settings.instances_path / server.id / "disk.config"
            config.unlink(missing_ok=True)  # rebuilt from the new name, metadata, key
            return self.hypervisor.rebuild(self._spec(server), start=start)

        return self._submit(server_id, lambda sid: self._act(
            sid, "rebuild", work, done, to_error=True))

    # -- resize --------------------------------------------------------------------

    def submit_resize(self, server_id: str, start: bool) -> Future[None]:
        """The record already carries the new flavor; `old_flavor` the one to revert to."""
        def done(server: Server, status: GuestStatus | None) -> None:
            if start:
                self._active(server, status)
            else:
                self._stopped(server)
            server.vm_state = RESIZED

        def undo(server: Server) -> None:
            for name, value in (server.old_flavor or {}).items():
                setattr(server, name, value)
            server.old_flavor = None

        return self._submit(server_id, lambda sid: self._act(
            sid, "resize", lambda s: self.hypervisor.resize(self._spec(s), start=start),
            done, undo=undo))

    def submit_confirm_resize(self, server_id: str) -> Future[None]:
        def done(server: Server, _status: GuestStatus | None) -> None:
            server.old_flavor = None
            server.vm_state = ACTIVE if server.power_state == RUNNING else STOPPED

        return self._submit(server_id, lambda sid: self._act(
            sid, "confirmResize", on_guest(self.hypervisor.confirm_resize), done))

    def submit_revert_resize(self, server_id: str) -> Future[None]:
        def back(server: Server) -> None:
            for name, value in (server.old_flavor or {}).items():
                setattr(server, name, value)

        def work(server: Server) -> GuestStatus:
            self._update(server.id, back)
            restored = self._update(server.id, lambda s: None)
            assert restored is not None
            return self.hypervisor.revert_resize(self._spec(restored),
                                                 start=server.power_state == RUNNING)

        def done(server: Server, status: GuestStatus | None) -> None:
            server.old_flavor = None
            if server.power_state == RUNNING:
                self._active(server, status)
            else:
                self._stopped(server)

        return self._submit(server_id, lambda sid: self._act(sid, "revertResize", work, done))

    # -- rescue --------------------------------------------------------------------

    def submit_rescue(self, server_id: str, image_id: str) -> Future[None]:
        def work(server: Server) -> GuestStatus:
            spec = self._spec(server)
            return self.hypervisor.rescue(GuestSpec(**{**spec.__dict__,
                                                       "rescue_image_id": image_id}))

        def done(server: Server, status: GuestStatus | None) -> None:
            self._active(server, status)
            server.vm_state = RESCUED

        return self._submit(server_id, lambda sid: self._act(sid, "rescue", work, done))

    def submit_unrescue(self, server_id: str) -> Future[None]:
        def work(server: Server) -> GuestStatus:
            spec = self._spec(server)
            return self.hypervisor.unrescue(GuestSpec(**{**spec.__dict__,
                                                         "rescue_image_id": None}))

        return self._submit(server_id, lambda sid: self._act(
            sid, "unrescue", work, self._active))

    # -- shelve --------------------------------------------------------------------

    def submit_shelve(self, server_id: str, context: RequestContext,
                      image_id: str) -> Future[None]:
        """Snapshot into `image_id`, power off, and offload unless shelved_offload_time says
        to keep the guest a while."""
        keep = self.runtime.settings.compute.shelved_offload_time

        def after() -> None:
            self.power_off_quietly(server_id)
            if keep == 0:
                self.hypervisor.destroy(server_id)

            def shelved(server: Server) -> None:
                server.shelved_image_id = image_id
                server.power_state, server.host_ports = SHUTDOWN, {}
                server.vm_state = SHELVED_OFFLOADED if keep == 0 else SHELVED
                if keep == 0:
                    server.host, server.power_state = None, NOSTATE

            self._update(server_id, shelved)

        return self._submit(server_id, lambda sid: self._snapshot(
            sid, context, image_id, action="shelve", after=after))

    def submit_shelve_offload(self, server_id: str) -> Future[None]:
        def done(server: Server, _status: GuestStatus | None) -> None:
            server.vm_state, server.host, server.power_state = SHELVED_OFFLOADED, None, NOSTATE

        return self._submit(server_id, lambda sid: self._act(
            sid, "shelveOffload", on_guest(self.hypervisor.destroy), done))

    def submit_unshelve(self, server_id: str, context: RequestContext) -> Future[None]:
        def work(server: Server) -> GuestStatus:
            spec = self._spec(server)
            if server.vm_state == SHELVED:
                return self.hypervisor.power_on(spec)
            image = server.shelved_image_id or server.image_id
            return self.hypervisor.spawn(GuestSpec(**{**spec.__dict__, "image_id": image}))

        def done(server: Server, status: GuestStatus | None) -> None:
            image = server.shelved_image_id
            server.shelved_image_id = None
            self._active(server, status)
            if image:  # nova deletes the shelve snapshot once the server runs again
                with contextlib.suppress(KumoError):
                    self.images.abandon_snapshot(context, image)

        return self._submit(server_id, lambda sid: self._act(sid, "unshelve", work, done))

    # -- soft delete -----------------------------------------------------------------

    def submit_soft_delete(self, server_id: str) -> Future[None]:
        def done(server: Server, _status: GuestStatus | None) -> None:
            self._stopped(server)
            server.vm_state, server.deleted_at = SOFT_DELETED, utcnow()

        return self._submit(server_id, lambda sid: self._act(
            sid, "softDelete", on_guest(self.power_off_quietly), done))

    def submit_restore(self, server_id: str) -> Future[None]:
        def done(server: Server, status: GuestStatus | None) -> None:
            server.deleted_at = None
            self._active(server, status)

        return self._submit(server_id, lambda sid: self._act(
            sid, "restore", lambda s: self.hypervisor.power_on(self._spec(s)), done))

    def reclaim(self) -> None:
        """Delete soft-deleted servers older than reclaim_instance_interval (nova's
        _reclaim_queued_deletes)."""
        interval = self.runtime.settings.compute.reclaim_instance_interval
        if interval <= 0:
            return
        cutoff = utcnow() - timedelta(seconds=interval)
        due: list[str] = []
        with session_scope(self.runtime.sessions) as session:
            for server in session.scalars(select(Server).where(
                    Server.vm_state == SOFT_DELETED, Server.task_state.is_(None))):
                if server.deleted_at is not None and aware(server.deleted_at) <= cutoff:
                    server.task_state = "deleting"
                    record_action(session, server, "delete", None, "reclaimed")
                    due.append(server.id)
        for server_id in due:
            log.info("reclaiming soft-deleted server %s", server_id)
            self.submit_delete(server_id)

    # -- backups -----------------------------------------------------------------------

    def submit_backup(self, server_id: str, context: RequestContext, image_id: str,
                      backup_type: str, rotation: int) -> Future[None]:
        """Snapshot into `image_id`, then keep only the newest `rotation` backups of this
        server and type (nova's _rotate_backups)."""
        def rotate() -> None:
            backups = self.images.backups(context, server_id, backup_type)
            for old in backups[: max(0, len(backups) - rotation)]:
                log.info("server %s: deleting backup %s (rotation %d)", server_id, old,
                         rotation)
                with contextlib.suppress(KumoError):
                    self.images.abandon_snapshot(context, old)

        return self._submit(server_id, lambda sid: self._snapshot(
            sid, context, image_id, action="createBackup", after=rotate))

