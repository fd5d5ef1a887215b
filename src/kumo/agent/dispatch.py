"""The compute service of an API process: places servers and defers their work.

`JobDispatch` stands where `kumo up`'s `ComputeService` stands (runtime.services
["compute"]), so handlers call the same `submit_*` methods. Each one becomes a job on
the queue of the host the server is on; `submit_spawn` (and anything else that needs
a host the server does not have yet) first asks the filter scheduler for one. Every
`submit_*` of `ComputeService`, including those added later, is deferred: a new
action never runs by accident in a process that has no hypervisor.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from kumo.agent import registry
from kumo.agent.jobs import JobQueue
from kumo.api.context import RequestContext
from kumo.compute.models import DELETED, ERROR, Server, ServerGroup, ServerGroupMember
from kumo.compute.scheduler import (
    NO_VALID_HOST,
    HostState,
    NoValidHost,
    RequestSpec,
    select_host,
)
from kumo.compute.servers import finish_action, set_fault
from kumo.compute.service import ComputeService
from kumo.db.engine import session_scope
from kumo.db.locks import lock_key
from kumo.errors import Conflict, KumoError, NotFound, ServiceUnavailable
from kumo.hypervisor.driver import Hypervisor
from kumo.runtime import Runtime

log = logging.getLogger("kumo.dispatch")

# Placement reads what every host's servers use and writes the choice: one at a time
# across processes (a transaction-level advisory lock), or two creates could both
# take a host's last free gigabyte.
SCHEDULER_LOCK = "kumo-scheduler"
DEFAULT_ZONE = "nova"  # nova's default_availability_zone


def _done() -> Future[None]:
    future: Future[None] = Future()
    future.set_result(None)
    return future


def host_states(session: Session, down_after: float) -> list[HostState]:
    """Every registered host with what its servers use now (and servers on their way)."""
    from kumo.agent.migration import incoming
    from kumo.compute.hosts import used_on

    states = []
    for node in registry.nodes(session):
        used = used_on(session, node.host)
        arriving = [session.get(Server, m.server_id) for m in incoming(session, node.host)]
        coming = [s for s in arriving if s is not None]
        states.append(HostState(
            host=node.host, up=registry.is_up(node, down_after=down_after),
            disabled=node.disabled,
            availability_zone=node.availability_zone, vcpus=node.vcpus,
            memory_mb=node.memory_mb, local_gb=node.local_gb,
            cpu_allocation_ratio=node.cpu_allocation_ratio,
            ram_allocation_ratio=node.ram_allocation_ratio,
            disk_allocation_ratio=node.disk_allocation_ratio,
            reserved_host_memory_mb=node.reserved_host_memory_mb,
            used_vcpus=used.vcpus + sum(s.vcpus for s in coming),
            used_memory_mb=used.memory_mb + sum(s.memory_mb for s in coming),
            used_local_gb=used.local_gb + sum(s.root_gb + s.ephemeral_gb for s in coming),
            servers=len(used.servers) + len(coming)))
    return states


@dataclass(frozen=True)
class GroupPlacement:
    """Where a server group's other members are (for the affinity filters)."""

    policy: str
    counts: dict[str, int]  # host -> members on it
    max_server_per_host: int = 1


def group_placement(session: Session, server_id: str) -> GroupPlacement | None:
    group = session.scalar(select(ServerGroup).join(
        ServerGroupMember, ServerGroupMember.group_id == ServerGroup.id).where(
        ServerGroupMember.server_id == server_id))
    if group is None:
        return None
    hosts = session.scalars(select(Server.host).join(
        ServerGroupMember, ServerGroupMember.server_id == Server.id).where(
        ServerGroupMember.group_id == group.id, Server.id != server_id,
        Server.host.is_not(None), Server.vm_state.not_in((DELETED, ERROR))))
    return GroupPlacement(group.policy, dict(Counter(h for h in hosts if h)),
                          int((group.rules or {}).get("max_server_per_host", 1)))


class JobDispatch(ComputeService):
    """runtime.services["compute"] of `kumo api` (and of `kumo up` on PostgreSQL)."""

    def __init__(self, runtime: Runtime, jobs: JobQueue) -> None:
        super().__init__(runtime)
        self.jobs = jobs
        self._placing = threading.Lock()

    @property
    def hypervisor(self) -> Hypervisor:
        raise ServiceUnavailable("this API process runs no guests: compute agents do")

    async def start(self) -> None:
        self.jobs.open()

    async def stop(self) -> None:
        self.jobs.close()

    # -- placement -----------------------------------------------------------

    def scheduling_zones(self) -> frozenset[str]:
        with session_scope(self.runtime.sessions) as session:
            return frozenset(node.availability_zone for node in registry.nodes(session))

    def request_spec(self, session: Session, server: Server,
                     ignore: frozenset[str] = frozenset()) -> RequestSpec:
        group = group_placement(session, server.id)
        # "nova" is also the default of a server that asked for no zone: any zone will do.
        zone = server.availability_zone if server.availability_zone != DEFAULT_ZONE else None
        return RequestSpec(
            vcpus=server.vcpus, memory_mb=server.memory_mb,
            disk_gb=server.root_gb + server.ephemeral_gb, availability_zone=zone,
            group_policy=group.policy if group else None,
            group_hosts=frozenset(group.counts) if group else frozenset(),
            group_host_counts=tuple(group.counts.items()) if group else (),
            max_server_per_host=group.max_server_per_host if group else 1,
            ignore_hosts=ignore)

    @contextlib.contextmanager
    def _scheduling(self) -> Iterator[Session]:
        """A transaction in which nobody else places a server (processes included)."""
        with self._placing, session_scope(self.runtime.sessions) as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(:k)"),
                                {"k": lock_key(SCHEDULER_LOCK)})
            yield session

    def place(self, server_id: str, ignore: frozenset[str] = frozenset()) -> str | None:
        """Pick a host for the server and record it; None if it vanished meanwhile."""
        with self._scheduling() as session:
            server = session.get(Server, server_id)
            if server is None or server.task_state == "deleting":
                return None
            states = host_states(session, self.runtime.settings.agent.service_down_time)
            chosen = select_host(states, self.request_spec(session, server, ignore))
            server.host = chosen.host
            server.availability_zone = chosen.availability_zone  # as nova shows it
            return chosen.host

    def start_migration(self, context: RequestContext, server_id: str,
                        wanted: str | None = None) -> None:
        """Cold-migrate: choose the destination (or check `wanted`), hand over to the source."""
        from kumo.agent import migration

        with self._scheduling() as session:
            server = session.get(Server, server_id)
            if server is None or server.host is None:
                raise Conflict(f"Instance {server_id} is on no compute host")
            states = host_states(session, self.runtime.settings.agent.service_down_time)
            if wanted is not None:
                if wanted not in {s.host for s in states}:
                    raise NotFound(f"Compute host {wanted} could not be found.")
                states = [s for s in states if s.host == wanted]
            try:
                chosen = select_host(states, self.request_spec(
                    session, server, frozenset({server.host})))
            except NoValidHost as exc:
                raise NoValidHost(exc.message.replace(
                    NO_VALID_HOST, migration.NO_HOST_FOR_MIGRATE, 1)) from None
            entry = migration.begin(session, context, server, chosen.host)
            source, migration_id = server.host, entry.id
        self.jobs.defer(source, server_id, "submit_migrate_out", [migration_id])

    def submit_confirm_resize(self, server_id: str) -> Future[None]:
        return self._end_migration(server_id, "submit_confirm_resize", confirm=True)

    def submit_revert_resize(self, server_id: str) -> Future[None]:
        return self._end_migration(server_id, "submit_revert_resize", confirm=False)

    def _end_migration(self, server_id: str, work: str, *, confirm: bool) -> Future[None]:
        """A migrated server's confirm/revert goes to the host that finishes it; a resize
        (same host) to the server's host as any other action."""
        from kumo.agent.migration import open_migration

        with session_scope(self.runtime.sessions) as session:
            entry = open_migration(session, server_id)
            moved = entry is not None and entry.status == "finished"
            target = (entry.source_compute if confirm else entry.dest_compute) \
                if entry is not None else ""
            migration_id = entry.id if entry is not None else 0
        if not moved:
            return self.defer(server_id, work)
        self.jobs.defer(target, server_id,
                        "submit_migrate_confirm" if confirm else "submit_migrate_revert",
                        [migration_id])
        return _done()

    def _no_host(self, server_id: str, action: str, exc: NoValidHost) -> None:
        log.warning("server %s: %s", server_id, exc.message)

        def change(server: Server) -> None:
            server.vm_state, server.task_state = ERROR, None
            set_fault(server, exc.message)

        self._update(server_id, change)
        with session_scope(self.runtime.sessions) as session:
            finish_action(session, server_id, action, exc.message)

    # -- work ----------------------------------------------------------------

    def _host_of(self, server_id: str) -> str | None:
        with session_scope(self.runtime.sessions) as session:
            server = session.get(Server, server_id)
            return None if server is None else server.host

    def defer(self, server_id: str, work: str, *args: Any) -> Future[None]:
        """Queue `work` on the server's host; a server on no host is an error."""
        host = self._host_of(server_id)
        if host is None:
            raise Conflict(f"Instance {server_id} is on no compute host")
        self.jobs.defer(host, server_id, work, args)
        return _done()

    def submit_spawn(self, server_id: str) -> Future[None]:
        try:
            host = self.place(server_id)
        except NoValidHost as exc:
            self._no_host(server_id, "create", exc)
            return _done()
        if host is not None:
            self.jobs.defer(host, server_id, "submit_spawn")
        return _done()

    def submit_forwards(self, server_ids: list[str]) -> None:
        for server_id in server_ids:
            host = self._host_of(server_id)
            if host is not None:
                self.jobs.defer(host, server_id, "submit_forwards", [[server_id]])

    def console_log(self, server_id: str, length: int | None) -> str:
        from kumo.agent.link import agent_call

        host = self._host_of(server_id)
        if host is None:
            raise Conflict(f"Instance {server_id} is on no compute host")
        query = {} if length is None else {"length": str(length)}
        return agent_call(self.runtime, host, f"/v1/servers/{server_id}/console", query).text


def _deferred(name: str) -> Callable[..., Future[None]]:
    def submit(self: JobDispatch, server_id: str, *args: Any) -> Future[None]:
        return self.defer(server_id, name, *args)

    submit.__name__ = name
    submit.__doc__ = f"Defer `{name}` to the agent of the server's host."
    return submit


for _name in dir(ComputeService):
    if _name.startswith("submit_") and _name not in JobDispatch.__dict__:
        setattr(JobDispatch, _name, _deferred(_name))


def dispatch_of(runtime: Runtime) -> JobDispatch | None:
    found: Any = runtime.services.get("compute")
    return found if isinstance(found, JobDispatch) else None


__all__ = ["JobDispatch", "KumoError", "dispatch_of", "host_states"]
