"""The compute host registry: registration, heartbeats, up and down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from kumo.agent import registry
from kumo.agent.models import ComputeNode
from kumo.db.engine import session_scope
from kumo.runtime import Runtime

FACTS = registry.HostFacts(vcpus=8, memory_mb=16384, local_gb=100, hypervisor_version=7002022)


def test_register_refreshes_facts_and_keeps_an_operators_disable(runtime: Runtime) -> None:
    with session_scope(runtime.sessions) as session:
        node = registry.register(session, "h1", FACTS, registry.Placement(
            availability_zone="az1", cpu_allocation_ratio=16.0), host_ip="10.0.0.1",
            agent_url="http://10.0.0.1:8775")
        assert (node.vcpus, node.availability_zone, node.cpu_allocation_ratio) == (8, "az1", 16)
        node.disabled, node.disabled_reason = True, "maintenance"
    bigger = registry.HostFacts(vcpus=16, memory_mb=32768, local_gb=200)
    with session_scope(runtime.sessions) as session:
        node = registry.register(session, "h1", bigger, registry.Placement())
        assert node.vcpus == 16 and node.availability_zone == "nova"
        assert node.disabled and node.disabled_reason == "maintenance"
        assert [n.host for n in registry.nodes(session)] == ["h1"]


def test_a_host_is_down_once_its_heartbeat_is_older_than_service_down_time(
        runtime: Runtime) -> None:
    with session_scope(runtime.sessions) as session:
        registry.register(session, "h1", FACTS, registry.Placement())
    with session_scope(runtime.sessions) as session:
        node = registry.find(session, "h1")
        assert node is not None and registry.is_up(node)
        later = datetime.now(UTC) + timedelta(seconds=61)
        assert not registry.is_up(node, now=later)
        assert registry.is_up(node, now=later, down_after=120)
        assert registry.host_status_of(session, "h1") == "UP"
        node.last_seen_at = datetime.now(UTC) - timedelta(seconds=61)
        assert registry.host_status_of(session, "h1") == "DOWN"
        assert registry.heartbeat(session, "h1")
        assert registry.host_status_of(session, "h1") == "UP"
        node.disabled = True
        assert registry.host_status_of(session, "h1") == "MAINTENANCE"
        node.forced_down = True
        assert registry.host_status_of(session, "h1") == "DOWN"
        # kumo up's own host on SQLite is in no registry: up while it answers
        assert registry.host_status_of(session, "elsewhere") == "UP"
    with session_scope(runtime.sessions) as session:
        session.query(ComputeNode).delete()
    with session_scope(runtime.sessions) as session:
        assert not registry.heartbeat(session, "h1")  # an admin removed it


def test_api_processes_of_one_host_share_a_row_and_beat_it(runtime: Runtime) -> None:
    with session_scope(runtime.sessions) as session:
        registry.api_beat(session, "api-a", starting=True)
        registry.api_beat(session, "api-a", starting=True)  # a second process, same host
        registry.api_beat(session, "api-b", starting=True)
    with session_scope(runtime.sessions) as session:
        rows = registry.api_hosts(session)
        assert [row.host for row in rows] == ["api-a", "api-b"]
        started = rows[0].started_at
        rows[0].last_seen_at = datetime.now(UTC) - timedelta(seconds=61)
    with session_scope(runtime.sessions) as session:
        assert not registry.is_up(registry.api_hosts(session)[0])
        registry.api_beat(session, "api-a")
    with session_scope(runtime.sessions) as session:
        row = registry.api_hosts(session)[0]
        assert registry.is_up(row) and row.started_at == started
