"""Which compute hosts exist, what they have, and whether they are up.

Liveness is nova's `db` servicegroup driver: each agent writes `last_seen_at` every
`report_interval` seconds; a host not heard from for `service_down_time` seconds (60,
nova's default) is down: os-services says so, the scheduler skips it, and its
servers' `host_status` reads DOWN. No lease or cluster membership beyond that row.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from kumo.agent.models import ApiService, ComputeNode
from kumo.db.base import new_id, utcnow
from kumo.runtime import Runtime

SERVICE_DOWN_TIME = 60  # nova's service_down_time


@dataclass(frozen=True)
class HostFacts:
    """What a host offers to guests, as the agent measures it at start."""

    vcpus: int
    memory_mb: int
    local_gb: int
    hypervisor_version: int = 0


def measure(runtime: Runtime, host: str) -> HostFacts:
    """This host's vCPUs (the kernel's), RAM (/proc/meminfo) and the disk of `instances/`."""
    from kumo.compute.hosts import local_host

    found = local_host(runtime, host)
    return HostFacts(vcpus=found.vcpus, memory_mb=found.memory_mb, local_gb=found.local_gb,
                     hypervisor_version=found.hypervisor_version)


@dataclass(frozen=True)
class Placement:
    """How much of a host the scheduler may hand out (nova's allocation ratios)."""

    availability_zone: str = "nova"
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    reserved_host_memory_mb: int = 512


def register(session: Session, host: str, facts: HostFacts, placement: Placement, *,
             host_ip: str = "", agent_url: str = "") -> ComputeNode:
    """Create or refresh the host's row at agent start; an operator's disable stays."""
    node = session.scalar(select(ComputeNode).where(ComputeNode.host == host))
    if node is None:
        node = ComputeNode(host=host)
        session.add(node)
    node.vcpus, node.memory_mb, node.local_gb = facts.vcpus, facts.memory_mb, facts.local_gb
    node.hypervisor_version = facts.hypervisor_version
    node.availability_zone = placement.availability_zone
    node.cpu_allocation_ratio = placement.cpu_allocation_ratio
    node.ram_allocation_ratio = placement.ram_allocation_ratio
    node.disk_allocation_ratio = placement.disk_allocation_ratio
    node.reserved_host_memory_mb = placement.reserved_host_memory_mb
    node.host_ip, node.agent_url = host_ip, agent_url
    node.started_at = node.last_seen_at = utcnow()
    node.forced_down = False
    session.flush()
    return node


def heartbeat(session: Session, host: str) -> bool:
    """Record that `host` is alive now; False if its row is gone (deleted by an admin)."""
    node = session.scalar(select(ComputeNode).where(ComputeNode.host == host))
    if node is None:
        return False
    node.last_seen_at = utcnow()
    return True


def is_up(node: ComputeNode | ApiService, now: datetime | None = None,
          down_after: float = SERVICE_DOWN_TIME) -> bool:
    """nova's servicegroup check: heard from within `service_down_time`, not forced down."""
    if isinstance(node, ComputeNode) and node.forced_down:
        return False
    seen = node.last_seen_at
    seen = seen if seen.tzinfo else seen.replace(tzinfo=UTC)  # SQLite keeps naive times
    return (now or datetime.now(UTC)) - seen <= timedelta(seconds=down_after)


def api_beat(session: Session, host: str, *, starting: bool = False) -> None:
    """Record that an API process of `host` is alive now (its row made if missing).

    Several API processes of one host start at once: the row is upserted, never read
    first, so that none of them fails on the unique host."""
    now = utcnow()
    values = {"id": new_id(), "host": host, "started_at": now, "last_seen_at": now}
    update = {"last_seen_at": now, **({"started_at": now} if starting else {})}
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = insert(ApiService).values(**values)
    session.execute(statement.on_conflict_do_update(index_elements=["host"], set_=update))


def api_hosts(session: Session) -> list[ApiService]:
    """Every host that runs (or ran) API processes, by name."""
    return list(session.scalars(select(ApiService).order_by(ApiService.host)))


def nodes(session: Session) -> list[ComputeNode]:
    """Every registered compute host, by name."""
    return list(session.scalars(select(ComputeNode).order_by(ComputeNode.host)))


def find(session: Session, host: str) -> ComputeNode | None:
    return session.scalar(select(ComputeNode).where(ComputeNode.host == host))


def host_status_of(session: Session, host: str) -> str:
    """nova's host_status of a server on `host`: UP, DOWN or MAINTENANCE.

    A host missing from the registry is `kumo up`'s own on SQLite, which is up while it
    answers. `service_down_time` comes with the session (kumo.runtime)."""
    node = find(session, host)
    if node is None:
        return "UP"
    down_after = float(session.info.get("service_down_time", SERVICE_DOWN_TIME))
    if not is_up(node, down_after=down_after):
        return "DOWN"
    return "MAINTENANCE" if node.disabled else "UP"
