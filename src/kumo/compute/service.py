"""The compute agent of this host: makes server records true with a `Hypervisor`.

HTTP handlers change records and call `submit_*`; the work runs on a small thread
pool, one job at a time per server, and moves the record on: BUILD -> ACTIVE or
ERROR (with a fault a user can act on), stop -> SHUTOFF, and so on. A periodic
pass compares records with what the hypervisor reports (nova's power-state
sync); at start-up, guests still running are adopted and the rest marked SHUTOFF.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import socket
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy import ColumnElement, select, true

from kumo.api.context import RequestContext
from kumo.compute.images import GlanceImages, ImagePort
from kumo.compute.instance_source import ServerInstanceSource
from kumo.compute.lifecycle import ServerLifecycle
from kumo.compute.models import (
    ACTIVE,
    BUILDING,
    CRASHED,
    DELETED,
    ERROR,
    NOSTATE,
    PAUSED_VM,
    RESCUED,
    RESIZED,
    RUNNING,
    SHUTDOWN,
    STOPPED,
    Server,
)
from kumo.compute.servers import finish_action, record_action, set_fault
from kumo.compute.volumes import ServerVolumes, is_volume_backed
from kumo.db.base import utcnow
from kumo.db.engine import session_scope
from kumo.errors import KumoError, ServiceUnavailable
from kumo.hypervisor.driver import GuestSpec, GuestState, GuestStatus, Hypervisor, Nic
from kumo.network import nics, secgroups
from kumo.runtime import Runtime
from kumo.workers import KeyedWorkers, cancel, every

log = logging.getLogger("kumo.compute")


class MetadataChannels(Protocol):
    """The part of `kumo.metadata.service.MetadataService` compute calls."""

    def open_channel(self, server_id: str) -> Path: ...

    def close_channel(self, server_id: str) -> None: ...


class ComputeService(ServerLifecycle):
    """Registered as runtime.services["compute"]; `kumo up` calls start() and stop()."""

    def __init__(
        self,
        runtime: Runtime,
        hypervisor: Hypervisor | None = None,
        metadata: MetadataChannels | None = None,
        images: ImagePort | None = None,
        *,
        sync_interval: float = 10.0,
        workers: int = 4,
    ) -> None:
        self.runtime = runtime
        self.host = socket.gethostname()
        self.images: ImagePort = images or GlanceImages(runtime)
        self.source = ServerInstanceSource(runtime)
        self.sync_interval = sync_interval
        self._hypervisor = hypervisor
        self.volumes = ServerVolumes(runtime)
        self._metadata = metadata
        self.workers = KeyedWorkers("compute", workers)  # one job at a time per server
        self._sync_task: asyncio.Task[None] | None = None

    # -- wiring ------------------------------------------------------------

    @property
    def hypervisor(self) -> Hypervisor:
        """The host's hypervisor, built on first use (probing QEMU/KVM is not free)."""
        if self._hypervisor is None:
            try:
                from kumo.hypervisor.local import build_hypervisor
            except ImportError as exc:
                raise ServiceUnavailable(f"no hypervisor driver is available: {exc}") from None
            self._hypervisor = build_hypervisor(self.runtime)
        return self._hypervisor

    @property
    def metadata(self) -> MetadataChannels | None:
        """The metadata service whose per-server channels guests reach 169.254.169.254 by."""
        if self._metadata is not None:
            return self._metadata
        found: Any = self.runtime.services.get("metadata")
        return found if hasattr(found, "open_channel") else None

    async def start(self) -> None:
        """Adopt guests that outlived the last run, then sync states periodically."""
        await asyncio.to_thread(self.adopt)
        self._sync_task = asyncio.create_task(every(
            self.sync_interval, self._sync_and_reclaim, log, "power state sync failed"))

    async def stop(self) -> None:
        """Stop syncing and wait for jobs under way; guests keep running (adopted next start)."""
        await cancel(self._sync_task)
        await asyncio.to_thread(self.workers.shutdown)

    def _sync_and_reclaim(self) -> None:
        self.sync_states()
        self.reclaim()

    # -- jobs ----------------------------------------------------------------

    def _lock(self, server_id: str) -> threading.Lock:
        return self.workers.lock(server_id)

    def _submit(self, server_id: str, job: Callable[[str], None]) -> Future[None]:
        return self.workers.submit(server_id, job)

    def busy(self, server_id: str) -> bool:
        return self._lock(server_id).locked()

    def wait_idle(self, timeout: float = 30) -> None:
        """Block until every submitted job has finished (tests, shutdown)."""
        self.workers.wait_idle(timeout)

    def submit_spawn(self, server_id: str) -> Future[None]:
        return self._submit(server_id, self._spawn)

    def submit_stop(self, server_id: str) -> Future[None]:
        return self._submit(server_id, self._stop)

    def submit_start(self, server_id: str) -> Future[None]:
        return self._submit(server_id, self._start)

    def submit_reboot(self, server_id: str, hard: bool) -> Future[None]:
        return self._submit(server_id, lambda sid: self._reboot(sid, hard))

    def submit_delete(self, server_id: str) -> Future[None]:
        return self._submit(server_id, self._delete)

    def submit_snapshot(self, server_id: str, context: RequestContext, image_id: str,
                        name: str = "") -> None:
        """Snapshot into the reserved image `image_id` (named `name`) in the background."""
        self._submit(server_id, lambda sid: self._snapshot(sid, context, image_id, name=name))

    def submit_attach(self, server_id: str, attachment_id: str) -> Future[None]:
        return self._submit(server_id, lambda sid: self._volume_job(
            sid, "attach_volume", lambda: self.volumes.attach(self.hypervisor, sid,
                                                              attachment_id)))

    def submit_detach(self, server_id: str, attachment_id: str) -> Future[None]:
        return self._submit(server_id, lambda sid: self._volume_job(
            sid, "detach_volume", lambda: self.volumes.detach(self.hypervisor, sid,
                                                              attachment_id)))

    def _volume_job(self, server_id: str, action: str, work: Callable[[], None]) -> None:
        try:
            work()
        except Exception as exc:
            self._fail(server_id, action, exc, to_error=False)
            return
        self._finish(server_id, action)

    def submit_forwards(self, server_ids: list[str]) -> None:
        for server_id in server_ids:
            self._submit(server_id, self._refresh_forwards)

    # -- the work ------------------------------------------------------------

    def _spec(self, server: Server) -> GuestSpec:
        with session_scope(self.runtime.sessions) as session:
            forwards = secgroups.forwards_for(session, session.get(Server, server.id) or server)
        channels = self.metadata
        socket_path = channels.open_channel(server.id) if channels else None
        drive = None
        if server.config_drive:
            drive = self.runtime.settings.instances_path / server.id / "disk.config"
            if not drive.exists():
                from kumo.metadata.configdrive import build_config_drive

                view = self.source.lookup(server.id)
                if view is None:
                    raise KumoError(f"server {server.id} vanished while building its config drive")
                build_config_drive(view, drive)
        netns, guest_nics = self._plug(server.id)
        root_volume, volumes = self.volumes.disks(server.id)
        return GuestSpec(
            server_id=server.id, name=server.name, image_id=server.image_id, vcpus=server.vcpus,
            memory_mb=server.memory_mb, root_gb=server.root_gb, forwards=forwards,
            config_drive=drive, metadata_socket=socket_path if netns is None else None,
            allow_outbound=self.runtime.settings.compute.allow_guest_outbound,
            nics=guest_nics, netns=netns, root_volume=root_volume, volumes=volumes,
            rescue_image_id=server.image_id if server.vm_state == RESCUED else None,
        )

    def _plug(self, server_id: str) -> tuple[str | None, tuple[Nic, ...]]:
        """The server's NICs on real networks (taps built first), or none (user mode)."""
        agent: Any = self.runtime.services.get("network")
        return agent.plug(server_id) if hasattr(agent, "plug") else (None, ())

    def _port_status(self, server_id: str, status: str) -> None:
        agent: Any = self.runtime.services.get("network")
        if hasattr(agent, "set_port_status"):
            agent.set_port_status(server_id, status)

    def _update(self, server_id: str, change: Callable[[Server], None]) -> Server | None:
        with session_scope(self.runtime.sessions) as session:
            server = session.get(Server, server_id)
            if server is None:
                return None
            change(server)
            session.flush()
            session.expunge(server)
            return server

    def _fail(self, server_id: str, action: str, exc: Exception, *, to_error: bool) -> None:
        message = exc.message if isinstance(exc, KumoError) else (
            f"kumo hit an unexpected error ({type(exc).__name__}: {exc}); see its log")
        if not isinstance(exc, KumoError):
            log.error("%s of %s failed", action, server_id, exc_info=exc)
        log.warning("server %s: %s failed: %s", server_id, action, message)

        def change(server: Server) -> None:
            if server.task_state == "deleting":
                return
            server.task_state = None
            if to_error:
                server.vm_state = ERROR
                set_fault(server, message)

        self._update(server_id, change)
        with session_scope(self.runtime.sessions) as session:
            finish_action(session, server_id, action, message)

    def _running(self, server: Server, status: GuestStatus) -> None:
        server.vm_state, server.power_state, server.task_state = ACTIVE, RUNNING, None
        server.host, server.host_ports = self.host, dict(status.host_ports)

    def _spawn(self, server_id: str) -> None:
        server = self._update(server_id, lambda s: setattr(s, "task_state", "spawning")
                              if s.task_state != "deleting" and s.vm_state != ERROR else None)
        if server is None or server.task_state == "deleting" or server.vm_state == ERROR:
            return  # deleted meanwhile, or failed at create (no address left: see its fault)
        try:
            self.volumes.create_boot_volumes(server_id)  # boot from volume: fill them first
            self.volumes.mark_attached(server_id)
            status = self.hypervisor.spawn(self._spec(server))
        except Exception as exc:
            self._fail(server_id, "create", exc, to_error=True)
            return

        def done(s: Server) -> None:
            if s.task_state == "deleting":
                return
            self._running(s, status)
            s.launched_at = utcnow()

        self._update(server_id, done)
        self._port_status(server_id, "ACTIVE")
        self._finish(server_id, "create")

    def _finish(self, server_id: str, action: str) -> None:
        with session_scope(self.runtime.sessions) as session:
            finish_action(session, server_id, action)

    def _stop(self, server_id: str) -> None:
        try:
            self.hypervisor.power_off(server_id, graceful=True, timeout=60)
        except Exception as exc:
            self._fail(server_id, "stop", exc, to_error=False)
            return
        self._update(server_id, _stopped)
        self._port_status(server_id, "DOWN")
        self._finish(server_id, "stop")

    def _start(self, server_id: str) -> None:
        server = self._update(server_id, lambda s: None)
        if server is None:
            return
        try:
            status = self.hypervisor.power_on(self._spec(server))
        except Exception as exc:
            self._fail(server_id, "start", exc, to_error=False)
            return
        self._update(server_id, lambda s: self._running(s, status))
        self._port_status(server_id, "ACTIVE")
        self._finish(server_id, "start")

    def _reboot(self, server_id: str, hard: bool) -> None:
        server = self._update(server_id, lambda s: None)
        if server is None:
            return
        try:
            if server.vm_state == ACTIVE and server.power_state == RUNNING:
                status = self.hypervisor.reboot(server_id, hard=hard)
            else:  # a HARD reboot of a stopped or errored server starts it
                status = self.hypervisor.power_on(self._spec(server))
        except Exception as exc:
            self._fail(server_id, "reboot", exc, to_error=hard)
            return

        def done(s: Server) -> None:
            self._running(s, status)
            s.fault_code = s.fault_message = s.fault_created = None

        self._update(server_id, done)
        self._finish(server_id, "reboot")

    def _delete(self, server_id: str) -> None:
        try:
            self.hypervisor.destroy(server_id)
        except Exception as exc:
            self._fail(server_id, "delete", exc, to_error=True)
            return
        channels = self.metadata
        if channels is not None:
            channels.close_channel(server_id)
        shutil.rmtree(self.runtime.settings.instances_path / server_id, ignore_errors=True)
        self.volumes.release(server_id)  # available again, or deleted (delete_on_termination)
        with session_scope(self.runtime.sessions) as session:
            nics.release_server_ports(session, server_id)
            server = session.get(Server, server_id)
            if server is not None:
                # nova keeps deleted instances: their actions, usage, `deleted=True` lists
                finish_action(session, server_id, "delete")
                finish_action(session, server_id, "forceDelete")
                server.vm_state, server.task_state, server.power_state = DELETED, None, NOSTATE
                server.host, server.host_ports, server.deleted_at = None, {}, utcnow()
        nics.notify(self.runtime)
        self.workers.forget(server_id)

    def _snapshot(self, server_id: str, context: RequestContext, image_id: str,
                  action: str = "createImage", after: Callable[[], None] | None = None,
                  name: str = "") -> None:
        with session_scope(self.runtime.sessions) as session:
            volume_backed = is_volume_backed(session, server_id)
        if volume_backed:
            self._snapshot_volumes(server_id, context, image_id, name or image_id, action, after)
            return
        folder = self.runtime.settings.instances_path / "_snapshots"
        folder.mkdir(parents=True, exist_ok=True)
        dest = folder / f"{image_id}.part"
        try:
            disk_format = self.hypervisor.snapshot(server_id, dest)
            if disk_format != "qcow2":
                raise KumoError(f"the hypervisor wrote a {disk_format} snapshot; kumo "
                                "registers snapshots as qcow2")
            uploading = "shelving_image_uploading" if action == "shelve" else "image_uploading"
            self._update(server_id, lambda s: setattr(s, "task_state", uploading))
            self.images.upload_snapshot(context, image_id, dest)
            if after is not None:
                after()
        except Exception as exc:
            with contextlib.suppress(KumoError):
                self.images.abandon_snapshot(context, image_id)
            self._fail(server_id, action, exc, to_error=False)
            return
        finally:
            dest.unlink(missing_ok=True)
        self._update(server_id, lambda s: setattr(s, "task_state", None))
        self._finish(server_id, action)

    def power_off_quietly(self, server_id: str) -> None:
        """Power the guest off if this host has it (soft delete, shelve)."""
        if self.hypervisor.status(server_id).state is not GuestState.MISSING:
            self.hypervisor.power_off(server_id, graceful=True, timeout=60)

    def _snapshot_volumes(self, server_id: str, context: RequestContext, image_id: str,
                          name: str, action: str, after: Callable[[], None] | None) -> None:
        """A volume-backed server: volume snapshots, and an image that maps them."""
        try:
            properties = self.volumes.snapshot_volume_backed(self.hypervisor, server_id,
                                                             context, name)
            self.images.activate_mapped(image_id, properties)
            if after is not None:
                after()
        except Exception as exc:
            with contextlib.suppress(KumoError):
                self.images.abandon_snapshot(context, image_id)
            self._fail(server_id, action, exc, to_error=False)
            return
        self._update(server_id, lambda s: setattr(s, "task_state", None))
        self._finish(server_id, action)

    def _refresh_forwards(self, server_id: str) -> None:
        agent: Any = self.runtime.services.get("network")
        if getattr(agent, "namespace", None) is not None:
            return  # real networks: nftables applies the rules, there are no forwards
        with session_scope(self.runtime.sessions) as session:
            server = session.get(Server, server_id)
            if server is None or server.vm_state != ACTIVE or server.power_state != RUNNING:
                return
            forwards = secgroups.forwards_for(session, server)
        try:
            ports = self.hypervisor.set_forwards(server_id, forwards)
        except KumoError as exc:
            log.warning("server %s: could not apply security group rules: %s",
                        server_id, exc.message)
            return
        self._update(server_id, lambda s: setattr(s, "host_ports", dict(ports)))

    def console_log(self, server_id: str, length: int | None) -> str:
        """The serial console (last `length` lines); called from a handler's thread."""
        return self.hypervisor.console_log(server_id, length)

    # -- state sync and adoption ----------------------------------------------

    def scheduling_zones(self) -> frozenset[str] | None:
        """None: servers go to this one host. A scheduling service (kumo.agent.dispatch)
        returns its hosts' availability zones."""
        return None

    def on_this_host(self) -> ColumnElement[bool]:
        """Which servers this service looks after: all of them on one host (`kumo up`);
        an agent of several (kumo.agent.process) narrows it to its own."""
        return true()

    def sync_states(self) -> None:
        """nova's power-state sync: what the hypervisor reports wins over stale records."""
        with session_scope(self.runtime.sessions) as session:
            servers = list(session.scalars(select(Server).where(
                self.on_this_host(), Server.task_state.is_(None),
                Server.vm_state.in_((ACTIVE, STOPPED)))))
            ids = [(s.id, s.vm_state) for s in servers]
        for server_id, vm_state in ids:
            lock = self._lock(server_id)
            if not lock.acquire(blocking=False):
                continue  # a job is changing it right now
            try:
                self._sync_one(server_id, vm_state, self.hypervisor.status(server_id))
            finally:
                lock.release()

    def _sync_one(self, server_id: str, vm_state: str, status: GuestStatus) -> None:
        if vm_state == ACTIVE and status.state is GuestState.RUNNING:
            self._update(server_id, lambda s: setattr(s, "host_ports", dict(status.host_ports)))
            return
        if vm_state == ACTIVE:
            self._lost(server_id, status)
        elif vm_state == STOPPED and status.state is GuestState.RUNNING:
            log.info("server %s is stopped but its guest runs: powering it off", server_id)
            self.hypervisor.power_off(server_id, graceful=False)

    def _lost(self, server_id: str, status: GuestStatus) -> None:
        """An ACTIVE server whose guest is not running any more."""
        if status.state is GuestState.SHUTOFF:
            message, power, fault = "the guest powered itself off", SHUTDOWN, None
        elif status.state is GuestState.CRASHED:
            message = status.fault or "QEMU exited unexpectedly"
            power, fault = CRASHED, message
        else:
            message = ("this host has no trace of the guest (its QEMU process and disk are "
                       "gone); delete the server and create it again")
            power, fault = NOSTATE, message
        log.warning("server %s: %s", server_id, message)

        def change(server: Server) -> None:
            server.power_state, server.task_state = power, None
            server.host_ports = {}
            if status.state is GuestState.MISSING:
                server.vm_state = ERROR
            else:
                server.vm_state = STOPPED
            if fault:
                set_fault(server, fault)

        server = self._update(server_id, change)
        if server is not None:
            with session_scope(self.runtime.sessions) as session:
                entry = record_action(session, server, "stop", None, message)
                entry.finish_time, entry.result = utcnow(), "Success"

    def adopt(self) -> None:
        """After a restart: keep running guests ACTIVE, mark the rest honestly."""
        try:
            running = self.hypervisor.adopt()
        except KumoError as exc:
            log.error("cannot ask the hypervisor which guests run: %s", exc.message)
            running = {}
        redo: list[tuple[str, str]] = []
        with session_scope(self.runtime.sessions) as session:
            known = {s.id: s for s in session.scalars(select(Server).where(
                Server.vm_state != DELETED, self.on_this_host()))}
            for server in known.values():
                self._adopt_one(server, running.get(server.id), redo)
        for server_id in set(running) - set(known):
            log.warning("reaping guest %s: it runs but its server was deleted", server_id)
            self.hypervisor.destroy(server_id)
        for server_id, job in redo:
            if job == "delete":
                self.submit_delete(server_id)
        channels = self.metadata
        for server_id, status in running.items():
            if server_id in known and status.state is GuestState.RUNNING and channels:
                channels.open_channel(server_id)

    def _adopt_one(self, server: Server, status: GuestStatus | None,
                   redo: list[tuple[str, str]]) -> None:
        if server.task_state == "deleting":
            redo.append((server.id, "delete"))
            return
        alive = status is not None and status.state is GuestState.RUNNING
        if server.vm_state == BUILDING:
            server.task_state = None
            if alive and status is not None:
                self._running(server, status)
                server.launched_at = server.launched_at or utcnow()
            else:
                server.vm_state, server.power_state = ERROR, NOSTATE
                set_fault(server, "kumo stopped while this server was being built; "
                                  "delete it and create it again")
            return
        server.task_state = None
        if alive and status is not None:
            kept = server.vm_state
            self._running(server, status)
            if kept in (RESCUED, RESIZED, PAUSED_VM):  # still rescued, resized or paused
                server.vm_state = kept
            log.info("adopted running guest of server %s", server.id)
        elif server.vm_state == ACTIVE:
            server.vm_state, server.power_state, server.host_ports = STOPPED, SHUTDOWN, {}
            log.info("server %s was not running after the restart: marked SHUTOFF", server.id)


def _stopped(server: Server) -> None:
    server.vm_state, server.power_state, server.task_state = STOPPED, SHUTDOWN, None
    server.host_ports = {}


def compute_of(runtime: Runtime) -> ComputeService:
    """The registered compute service (handlers use this)."""
    service: Any = runtime.services.get("compute")
    if not isinstance(service, ComputeService):
        raise ServiceUnavailable("the compute service is not running")
    return service


def register_host_parts(runtime: Runtime) -> None:
    """The parts a host that runs guests needs besides compute: metadata, hypervisor."""
    if "metadata" not in runtime.services:
        from kumo.metadata.imds import shared_secret
        from kumo.metadata.service import MetadataService

        with session_scope(runtime.sessions) as session:
            secret = shared_secret(session)
        runtime.services["metadata"] = MetadataService(
            ServerInstanceSource(runtime), runtime.settings.run_dir, runtime.settings,
            token_secret=secret)
    if "hypervisor" not in runtime.services:
        from kumo.hypervisor.local import build_hypervisor

        # Registered on its own so `kumo up` starts it (adoption, cache manager loop)
        # before compute, which then shares this one instance.
        runtime.services["hypervisor"] = build_hypervisor(runtime)


def register(runtime: Runtime) -> ComputeService:
    """Seed the default flavors and register the compute service (called by `prepare`)."""
    from kumo.compute.flavors import seed_defaults

    with session_scope(runtime.sessions) as session:
        seed_defaults(session)
    register_host_parts(runtime)
    service = ComputeService(runtime, hypervisor=runtime.services["hypervisor"])
    runtime.services["compute"] = service
    return service
