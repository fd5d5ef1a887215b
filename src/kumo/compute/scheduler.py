"""Nova's filter scheduler: which compute host a server goes to.

Each host passes the filters nova enables by default, in nova's order, or is dropped
with the reason recorded:

- ComputeFilter: the host's agent is up (heartbeat within `service_down_time`) and
  the host is not disabled;
- AvailabilityZoneFilter: the host is in the zone the request names;
- ServerGroupAntiAffinityFilter / ServerGroupAffinityFilter: apart from, or together
  with, the other members of the server's group;
- the resources placement would check: free vCPUs, RAM and disk, each total scaled by
  its allocation ratio (`cpu_allocation_ratio`, `ram_allocation_ratio`,
  `disk_allocation_ratio`; RAM less `reserved_host_memory_mb`), minus what the host's
  servers already use.

The hosts left are weighed as nova's RAMWeigher does (most free RAM first: servers
spread), ties broken by fewer servers, then by name. When no host is left, NoValidHost
carries nova's message and each filter's verdict, so the fault says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from kumo.errors import BadRequest

NO_VALID_HOST = "No valid host was found. There are not enough hosts available."


class NoValidHost(BadRequest):
    """No host passes the filters (nova's exception of the same name; a migrate request
    answers 400 with it, a new server goes to ERROR with it as its fault)."""


@dataclass(frozen=True)
class HostState:
    """A host as the scheduler sees it: capacity, ratios, what its servers use."""

    host: str
    up: bool
    disabled: bool
    availability_zone: str
    vcpus: int
    memory_mb: int
    local_gb: int
    cpu_allocation_ratio: float = 4.0
    ram_allocation_ratio: float = 1.0
    disk_allocation_ratio: float = 1.0
    reserved_host_memory_mb: int = 512
    used_vcpus: int = 0
    used_memory_mb: int = 0
    used_local_gb: int = 0
    servers: int = 0

    @property
    def free_vcpus(self) -> float:
        return self.vcpus * self.cpu_allocation_ratio - self.used_vcpus

    @property
    def free_memory_mb(self) -> float:
        usable = max(0, self.memory_mb - self.reserved_host_memory_mb)
        return usable * self.ram_allocation_ratio - self.used_memory_mb

    @property
    def free_local_gb(self) -> float:
        return self.local_gb * self.disk_allocation_ratio - self.used_local_gb


@dataclass(frozen=True)
class RequestSpec:
    """What one server asks for (nova's RequestSpec, the parts kumo honours)."""

    vcpus: int
    memory_mb: int
    disk_gb: int
    availability_zone: str | None = None
    group_policy: str | None = None  # affinity | anti-affinity | soft-* (preferences)
    group_hosts: frozenset[str] = frozenset()  # hosts the group's other members are on
    max_server_per_host: int = 1  # anti-affinity's rule (nova's default 1)
    group_host_counts: tuple[tuple[str, int], ...] = ()  # members per host
    ignore_hosts: frozenset[str] = frozenset()  # e.g. the source host of a migration


@dataclass
class _Verdicts:
    lines: list[str] = field(default_factory=list)

    def note(self, name: str, kept: int, dropped: list[str]) -> None:
        if dropped:
            self.lines.append(f"{name} kept {kept} ({'; '.join(dropped)})")


def _fmt(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.1f}"


def select_host(hosts: Sequence[HostState], spec: RequestSpec) -> HostState:
    """The host the server goes to; NoValidHost with every filter's reasons otherwise."""
    verdicts = _Verdicts()
    left = list(hosts)
    if not left:
        raise NoValidHost(f"{NO_VALID_HOST} No compute host is registered: start "
                          "`kumo agent` on a host (or `kumo up`).")

    def run(name: str, keep: list[HostState], why: dict[str, str]) -> None:
        nonlocal left
        verdicts.note(name, len(keep), [f"{h}: {r}" for h, r in why.items()])
        left = keep

    why: dict[str, str] = {}
    keep = []
    for state in left:
        if state.host in spec.ignore_hosts:
            why[state.host] = "excluded (the server's current host)"
        elif not state.up:
            why[state.host] = "its agent is down"
        elif state.disabled:
            why[state.host] = "disabled"
        else:
            keep.append(state)
    run("ComputeFilter", keep, why)

    if spec.availability_zone:
        why, keep = {}, []
        for state in left:
            if state.availability_zone == spec.availability_zone:
                keep.append(state)
            else:
                why[state.host] = f"in zone {state.availability_zone}"
        run("AvailabilityZoneFilter", keep, why)

    counts = dict(spec.group_host_counts)
    if spec.group_policy == "anti-affinity":
        why, keep = {}, []
        for state in left:
            members = counts.get(state.host, 1 if state.host in spec.group_hosts else 0)
            if members >= spec.max_server_per_host:
                why[state.host] = f"already has {members} server(s) of the group"
            else:
                keep.append(state)
        run("ServerGroupAntiAffinityFilter", keep, why)
    elif spec.group_policy == "affinity" and spec.group_hosts:
        why, keep = {}, []
        for state in left:
            if state.host in spec.group_hosts:
                keep.append(state)
            else:
                why[state.host] = "the group's servers are on " + ", ".join(
                    sorted(spec.group_hosts))
        run("ServerGroupAffinityFilter", keep, why)

    resources: tuple[tuple[str, int, str, str], ...] = (
        ("VCPU", spec.vcpus, "free_vcpus", ""),
        ("MEMORY_MB", spec.memory_mb, "free_memory_mb", " MB"),
        ("DISK_GB", spec.disk_gb, "free_local_gb", " GB"))
    for name, need, attribute, unit in resources:
        why, keep = {}, []
        for state in left:
            free: float = getattr(state, attribute)
            if free >= need:
                keep.append(state)
            else:
                why[state.host] = f"{_fmt(max(0.0, free))}{unit} free, needs {need}{unit}"
        run(name, keep, why)

    if not left:
        raise NoValidHost(f"{NO_VALID_HOST} " + "; ".join(verdicts.lines) + ".")
    return _weigh(left, spec, counts)


def _weigh(left: list[HostState], spec: RequestSpec, counts: dict[str, int]) -> HostState:
    def order(state: HostState) -> tuple[float, float, int, str]:
        # soft policies are preferences (nova's ServerGroupSoft*Weigher): fewer or more
        # members first, then RAMWeigher: most free RAM; then fewer servers, then name.
        members = counts.get(state.host, 1 if state.host in spec.group_hosts else 0)
        group = (members if spec.group_policy == "soft-anti-affinity"
                 else -members if spec.group_policy == "soft-affinity" else 0)
        return (group, -state.free_memory_mb, state.servers, state.host)

    return min(left, key=order)
