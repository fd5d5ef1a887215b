"""One compute host's agent: its guests, its heartbeat, the jobs of its queue.

`kumo agent` builds the host's parts exactly as `kumo up` does (hypervisor with its
own `_base` cache, metadata service, network agent) around an `AgentCompute`, and adds
`Agent`, which registers the host, beats every `report_interval` seconds, runs the
procrastinate worker on queue `host:<name>` and serves the signed agent link
(console log, disk for migrations, the guests' VNC and serial consoles). `kumo up` on
PostgreSQL runs the same `Agent` beside its APIs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from concurrent.futures import Future
from pathlib import Path
from typing import Any

from procrastinate import App
from sqlalchemy import ColumnElement
from starlette.websockets import WebSocket

from kumo.agent import migration, registry
from kumo.agent.jobs import JobQueue, queue_of, retry_interrupted, worker_app
from kumo.agent.link import agent_app, link_key
from kumo.compute.models import Server
from kumo.compute.service import ComputeService
from kumo.db.engine import libpq_url, session_scope
from kumo.errors import NotFound
from kumo.hypervisor.cache_manager import INSTANCE_RECORD
from kumo.runtime import Runtime
from kumo.workers import every

log = logging.getLogger("kumo.agent")


class AgentCompute(ComputeService):
    """The host's compute service under an agent: work runs in the job's own thread.

    A job stays `doing` until its work is done, so procrastinate's per-server lock
    covers the work itself, and a job the agent dies in is retried at its next start.
    """

    def __init__(self, runtime: Runtime, host: str, jobs: JobQueue, **kwargs: Any) -> None:
        super().__init__(runtime, **kwargs)
        self.host = host
        self.jobs = jobs  # work this host hands to another (migrations)

    def on_this_host(self) -> ColumnElement[bool]:
        # Servers being built have their host set by the scheduler before their job comes.
        return Server.host == self.host

    def _submit(self, server_id: str, job: Any) -> Future[None]:
        future: Future[None] = Future()
        with self._lock(server_id):
            try:
                job(server_id)
            except Exception:
                log.exception("%s of server %s failed", getattr(job, "__name__", job), server_id)
        future.set_result(None)
        return future

    def run_job(self, server_id: str, work: str, args: list[Any]) -> None:
        """Do one job: the `submit_*` method an API process deferred."""
        if not work.startswith("submit_") or not hasattr(self, work):
            raise NotFound(f"no such compute work: {work}")
        getattr(self, work)(server_id, *args)

    # -- cold migration (kumo.agent.migration), one step per host ----------------------

    def submit_migrate_out(self, server_id: str, migration_id: int) -> Future[None]:
        return self._submit(server_id, lambda sid: migration.migrate_out(self, sid, migration_id))

    def submit_migrate_in(self, server_id: str, migration_id: int) -> Future[None]:
        return self._submit(server_id, lambda sid: migration.migrate_in(self, sid, migration_id))

    def submit_migrate_confirm(self, server_id: str, migration_id: int) -> Future[None]:
        return self._submit(server_id, lambda sid: migration.confirm(self, sid, migration_id))

    def submit_migrate_revert(self, server_id: str, migration_id: int) -> Future[None]:
        return self._submit(server_id, lambda sid: migration.revert(self, sid, migration_id))

    def submit_migrate_reverted(self, server_id: str, migration_id: int) -> Future[None]:
        return self._submit(server_id, lambda sid: migration.reverted(self, sid, migration_id))

    def instance_record(self, server_id: str) -> dict[str, Any]:
        """The server's instance.json (image and disk format) for a migration."""
        path = self.runtime.settings.instances_path / server_id / INSTANCE_RECORD
        try:
            loaded = json.loads(path.read_text())
        except (OSError, ValueError):
            raise NotFound(f"this host has no disk of server {server_id}") from None
        return dict(loaded) if isinstance(loaded, dict) else {}

    def disk_path(self, server_id: str) -> Path:
        path = self.runtime.settings.instances_path / server_id / "disk"
        if not path.exists():
            raise NotFound(f"this host has no disk of server {server_id}")
        return path


def default_ip() -> str:
    """The address this host reaches others from (nova's `my_ip` default).

    A UDP socket 'connected' to a documentation address sends nothing; the kernel
    just picks the source address its routes would use.
    """
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))
        return str(probe.getsockname()[0])
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


class Agent:
    """runtime.services["agent"]: registration, heartbeat and the job worker of a host.

    The agent link (kumo.agent.link) is served by the process's own HTTP server: at
    `[agent] listen` for `kumo agent`, under `/agent` beside the APIs for `kumo up`.
    """

    def __init__(self, runtime: Runtime, compute: AgentCompute, agent_url: str, *,
                 network: Any = None, poll_interval: float = 2.0) -> None:
        self.runtime = runtime
        self.compute = compute
        self.network = network
        self.host = compute.host
        self.agent_url = agent_url
        self.report_interval = runtime.settings.agent.report_interval
        self.poll_interval = poll_interval
        self.app: App | None = None
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await asyncio.to_thread(self.register)
        self.app = worker_app(libpq_url(self.runtime.settings.db_url), self._run,
                              self._run_host)
        await self.app.open_async()
        retried = await retry_interrupted(self.app, self.host)
        if retried:
            log.info("%d interrupted job(s) will run again", len(retried))
        self._tasks.append(asyncio.create_task(every(
            self.report_interval, self._heartbeat, log,
            f"heartbeat of host {self.host} failed")))
        self._tasks.append(asyncio.create_task(self.app.run_worker_async(
            queues=[queue_of(self.host)], name=f"agent-{self.host}", concurrency=4,
            install_signal_handlers=False, listen_notify=True,
            fetch_job_polling_interval=self.poll_interval, delete_jobs="successful",
            shutdown_graceful_timeout=30)))
        log.info("agent of host %s: queue %s, link %s", self.host, queue_of(self.host),
                 self.agent_url)

    async def stop(self) -> None:
        for task in reversed(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        if self.app is not None:
            await self.app.close_async()
            self.app = None

    def register(self) -> None:
        settings = self.runtime.settings
        facts = registry.measure(self.runtime, self.host)
        placement = registry.Placement(
            availability_zone=settings.agent.default_availability_zone,
            cpu_allocation_ratio=settings.agent.cpu_allocation_ratio,
            ram_allocation_ratio=settings.agent.ram_allocation_ratio,
            disk_allocation_ratio=settings.agent.disk_allocation_ratio,
            reserved_host_memory_mb=settings.agent.reserved_host_memory_mb)
        with session_scope(self.runtime.sessions) as session:
            registry.register(session, self.host, facts, placement,
                              host_ip=settings.agent.my_ip or default_ip(),
                              agent_url=self.agent_url)
        if self.network is not None:
            self.network.changed()  # every host's VXLAN tunnels now include this one

    def _heartbeat(self) -> None:
        with session_scope(self.runtime.sessions) as session:
            alive = registry.heartbeat(session, self.host)
        if not alive:
            log.warning("host %s was removed from the registry: registering again", self.host)
            self.register()

    def _run(self, server_id: str, work: str, args: list[Any]) -> None:
        self.compute.run_job(server_id, work, args)

    def _run_host(self, work: str) -> None:
        if work == "network_changed" and hasattr(self.network, "apply_locally"):
            self.network.apply_locally()
        else:
            log.warning("host %s: no such host job %r (ignored)", self.host, work)


def link_app(runtime: Runtime, compute: AgentCompute) -> Any:
    """The signed agent link of this host's compute (kumo.agent.link)."""
    from kumo.console.relay import relay_local, serial_relay_of

    serial = serial_relay_of(runtime)

    async def consoles(websocket: WebSocket, server_id: str, kind: str) -> None:
        await relay_local(websocket, compute.hypervisor, serial, server_id, kind)

    return agent_app(link_key(runtime), compute.console_log, compute.disk_path,
                     compute.instance_record, consoles)
