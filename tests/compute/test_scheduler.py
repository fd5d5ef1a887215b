"""The filter scheduler: where a server goes, and why none fits when none does."""

from __future__ import annotations

from dataclasses import replace

import pytest

from kumo.compute.scheduler import NO_VALID_HOST, HostState, NoValidHost, RequestSpec, select_host

TINY = RequestSpec(vcpus=1, memory_mb=512, disk_gb=1)


def host(name: str, **kw: object) -> HostState:
    base = HostState(host=name, up=True, disabled=False, availability_zone="nova", vcpus=2,
                     memory_mb=4096, local_gb=20, reserved_host_memory_mb=512)
    return replace(base, **kw)  # type: ignore[arg-type]


def test_servers_spread_by_free_ram_like_nova_ram_weigher() -> None:
    hosts = [host("a", used_memory_mb=1024), host("b"), host("c", used_memory_mb=512)]
    assert select_host(hosts, TINY).host == "b"
    # ties: fewer servers first, then the name
    assert select_host([host("b", servers=2), host("a", servers=3), host("c", servers=2)],
                       TINY).host == "b"


def test_allocation_ratios_scale_what_a_host_offers() -> None:
    busy = host("a", used_vcpus=8)  # 2 vCPUs x 4.0 = 8, all used
    with pytest.raises(NoValidHost, match=r"VCPU kept 0 \(a: 0 free, needs 1\)"):
        select_host([busy], TINY)
    assert select_host([replace(busy, cpu_allocation_ratio=16.0)], TINY).host == "a"
    # RAM: (4096 - 512 reserved) x 1.0 = 3584 MB
    with pytest.raises(NoValidHost, match=r"MEMORY_MB kept 0 \(a: 3584 MB free, needs 4096 MB\)"):
        select_host([host("a")], replace(TINY, memory_mb=4096))
    assert select_host([host("a", ram_allocation_ratio=1.5)],
                       replace(TINY, memory_mb=4096)).host == "a"
    with pytest.raises(NoValidHost, match=r"DISK_GB kept 0 \(a: 20 GB free, needs 40 GB\)"):
        select_host([host("a")], replace(TINY, disk_gb=40))


def test_down_and_disabled_hosts_get_nothing_and_the_fault_says_so() -> None:
    with pytest.raises(NoValidHost) as caught:
        select_host([host("a", up=False), host("b", disabled=True)], TINY)
    message = caught.value.message
    assert message.startswith(NO_VALID_HOST)
    assert "a: its agent is down" in message and "b: disabled" in message
    assert select_host([host("a", up=False), host("b")], TINY).host == "b"


def test_no_host_at_all_says_to_start_an_agent() -> None:
    with pytest.raises(NoValidHost, match="kumo agent"):
        select_host([], TINY)


def test_availability_zones() -> None:
    hosts = [host("a", availability_zone="az1"), host("b", availability_zone="az2")]
    assert select_host(hosts, replace(TINY, availability_zone="az2")).host == "b"
    with pytest.raises(NoValidHost, match="AvailabilityZoneFilter kept 0"):
        select_host(hosts, replace(TINY, availability_zone="az3"))


def test_anti_affinity_keeps_group_members_apart() -> None:
    hosts = [host("a"), host("b", used_memory_mb=1024)]
    spec = replace(TINY, group_policy="anti-affinity", group_hosts=frozenset({"a"}))
    assert select_host(hosts, spec).host == "b"  # though a has more free RAM
    with pytest.raises(NoValidHost, match="ServerGroupAntiAffinityFilter kept 0"):
        select_host(hosts, replace(spec, group_hosts=frozenset({"a", "b"})))
    two = replace(spec, max_server_per_host=2, group_host_counts=(("a", 1), ("b", 1)))
    assert select_host(hosts, two).host == "a"


def test_affinity_keeps_group_members_together() -> None:
    hosts = [host("a"), host("b", used_memory_mb=1024)]
    spec = replace(TINY, group_policy="affinity", group_hosts=frozenset({"b"}))
    assert select_host(hosts, spec).host == "b"
    with pytest.raises(NoValidHost, match="ServerGroupAffinityFilter kept 0"):
        select_host([host("a")], spec)
    assert select_host(hosts, replace(spec, group_hosts=frozenset())).host == "a"  # first


def test_soft_policies_are_preferences() -> None:
    hosts = [host("a"), host("b", used_memory_mb=1024)]
    soft_anti = replace(TINY, group_policy="soft-anti-affinity", group_hosts=frozenset({"a"}))
    assert select_host(hosts, soft_anti).host == "b"
    assert select_host([host("a")], soft_anti).host == "a"  # rather together than nowhere
    soft = replace(TINY, group_policy="soft-affinity", group_hosts=frozenset({"b"}))
    assert select_host(hosts, soft).host == "b"


def test_a_migration_never_picks_the_source_host() -> None:
    spec = replace(TINY, ignore_hosts=frozenset({"a"}))
    assert select_host([host("a"), host("b", used_memory_mb=2048)], spec).host == "b"
    with pytest.raises(NoValidHost, match="the server's current host"):
        select_host([host("a")], spec)
