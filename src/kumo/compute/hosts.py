"""The compute hosts: os-hypervisors, os-services and os-availability-zone.

One row per compute host, read from the host itself (vCPUs from the kernel, RAM
from /proc/meminfo, disk from the filesystem holding `instances/`) and what its
servers use from the records. `kumo up` has one host; on PostgreSQL every compute
host's agent registers itself (kumo.agent.registry) and `compute_hosts()` lists them
with their heartbeat's verdict (up/down) and an operator's disable.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumo.api.context import RequestContext, context_of
from kumo.api.parts import in_session, runtime_from
from kumo.compute.microversion import Version, version_of
from kumo.compute.models import DELETED, SHELVED_OFFLOADED, Server
from kumo.errors import BadRequest, NotFound
from kumo.runtime import Runtime

ZONE = "nova"  # nova's default_availability_zone
INTERNAL_ZONE = "internal"  # where nova lists its non-compute services
RESERVED_HOST_MEMORY_MB = 512  # nova's reserved_host_memory_mb
_NAMESPACE = uuid.UUID("5b7b5d0e-6b75-4d6f-8d2e-6b756d6f6873")


@dataclass(frozen=True)
class Host:
    """One compute host's capacity."""

    name: str
    vcpus: int
    memory_mb: int
    local_gb: int
    free_disk_gb: int
    hypervisor_version: int
    index: int = 1  # nova's integer id before 2.53
    state: str = "up"  # up | down (its agent's heartbeat)
    status: str = "enabled"  # enabled | disabled (by an operator)
    disabled_reason: str | None = None
    forced_down: bool = False
    zone: str = ZONE
    host_ip: str = "127.0.0.1"
    updated_at: str | None = None  # last heartbeat (None: now)

    @property
    def uuid(self) -> str:
        return str(uuid.uuid5(_NAMESPACE, self.name))


def _mem_total_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    return 0


@lru_cache(maxsize=1)
def _qemu_version() -> int:
    """nova's integer form of QEMU's version (7.2.22 -> 7002022); 0 when unknown."""
    from kumo.hypervisor.qemu import version

    major, minor, micro = version()
    return major * 1_000_000 + minor * 1_000 + micro


def local_host(runtime: Runtime, name: str) -> Host:
    path = runtime.settings.instances_path
    path.mkdir(parents=True, exist_ok=True)
    disk = shutil.disk_usage(path)
    return Host(name=name, vcpus=os.cpu_count() or 1, memory_mb=_mem_total_mb(),
                local_gb=disk.total // 1024**3, free_disk_gb=disk.free // 1024**3,
                hypervisor_version=_qemu_version())


def compute_hosts(runtime: Runtime) -> list[Host]:
    """Every compute host of this cloud (one for `kumo up`, each agent's on PostgreSQL)."""
    from kumo.compute.service import compute_of

    compute = compute_of(runtime)
    if compute.scheduling_zones() is None:
        return [local_host(runtime, compute.host)]
    from kumo.agent import registry
    from kumo.db.engine import session_scope

    down_after = runtime.settings.agent.service_down_time
    with session_scope(runtime.sessions) as session:
        return [Host(name=node.host, vcpus=node.vcpus, memory_mb=node.memory_mb,
                     local_gb=node.local_gb, free_disk_gb=node.local_gb,
                     hypervisor_version=node.hypervisor_version, index=index,
                     state="up" if registry.is_up(node, down_after=down_after) else "down",
                     status="disabled" if node.disabled else "enabled",
                     disabled_reason=node.disabled_reason, forced_down=node.forced_down,
                     zone=node.availability_zone, host_ip=node.host_ip or "127.0.0.1",
                     updated_at=_stamp(node.last_seen_at))
                for index, node in enumerate(registry.nodes(session), start=1)]


@dataclass(frozen=True)
class Used:
    vcpus: int = 0
    memory_mb: int = 0
    local_gb: int = 0
    servers: tuple[tuple[str, str], ...] = ()  # (id, name)


def used_on(session: Session, host: str) -> Used:
    rows = list(session.scalars(select(Server).where(
        Server.host == host, Server.vm_state.not_in((DELETED, SHELVED_OFFLOADED)))))
    return Used(sum(s.vcpus for s in rows), sum(s.memory_mb for s in rows),
                sum(s.root_gb + s.ephemeral_gb for s in rows),
                tuple((s.id, s.name) for s in rows))


def _now() -> str:
    return _stamp(datetime.now(UTC))


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000000")


def _cpu_info(version: Version) -> Any:
    info = {"arch": platform.machine(), "model": "qemu64", "vendor": "QEMU",
            "topology": {"cores": os.cpu_count() or 1, "threads": 1, "sockets": 1},
            "features": []}
    return info if version >= (2, 28) else json.dumps(info)


def hypervisor_view(host: Host, used: Used, version: Version, *, detail: bool,
                    with_servers: bool = False) -> dict[str, Any]:
    body: dict[str, Any] = {"id": host.uuid if version >= (2, 53) else host.index,
                            "hypervisor_hostname": host.name, "state": host.state,
                            "status": host.status}
    if detail:
        service_id: Any = service_id_of(host, "nova-compute", version)
        body.update(hypervisor_type="QEMU", hypervisor_version=host.hypervisor_version,
                    host_ip=host.host_ip,
                    service={"host": host.name, "id": service_id,
                             "disabled_reason": host.disabled_reason})
        if version < (2, 88):
            memory_used = used.memory_mb + RESERVED_HOST_MEMORY_MB
            body.update(
                vcpus=host.vcpus, memory_mb=host.memory_mb, local_gb=host.local_gb,
                vcpus_used=used.vcpus, memory_mb_used=memory_used, local_gb_used=used.local_gb,
                free_ram_mb=host.memory_mb - memory_used,
                free_disk_gb=host.local_gb - used.local_gb, current_workload=0,
                running_vms=len(used.servers), disk_available_least=host.free_disk_gb,
                cpu_info=_cpu_info(version))
        else:
            body["uptime"] = _uptime()
    if with_servers and used.servers:
        body["servers"] = [{"uuid": sid, "name": name} for sid, name in used.servers]
    return body


def _uptime() -> str:
    seconds = float(Path("/proc/uptime").read_text().split()[0])
    return f" {datetime.now(UTC).strftime('%H:%M:%S')} up {int(seconds // 60)} min"


def _hypervisors(request: Request) -> list[Host]:
    context_of(request).require_admin()
    return compute_hosts(runtime_from(request))


def _find(hosts: list[Host], ref: str, version: Version) -> Host:
    for host in hosts:
        if ref in (host.uuid, str(host.index), host.name):
            if version >= (2, 53) and ref == str(host.index):
                continue
            return host
    if version >= (2, 53):
        try:
            uuid.UUID(ref)
        except ValueError:
            raise BadRequest(f"Invalid uuid {ref}") from None
    raise NotFound(f"Hypervisor with ID '{ref}' could not be found.")


async def list_hypervisors(request: Request) -> Response:
    detail = request.url.path.endswith("/detail")
    mv, hosts, query = version_of(request), _hypervisors(request), request.query_params
    pattern = query.get("hypervisor_hostname_pattern")
    with_servers = mv >= (2, 53) and query.get("with_servers", "").lower() in ("1", "true")
    if pattern is not None:
        hosts = [h for h in hosts if pattern in h.name]
        if not hosts:
            raise NotFound(f"No hypervisor matching '{pattern}' could be found.")
    shown = await in_session(request, lambda s, c: [
        hypervisor_view(h, used_on(s, h.name), mv, detail=detail, with_servers=with_servers)
        for h in hosts])
    return JSONResponse({"hypervisors": shown})


async def show_hypervisor(request: Request) -> Response:
    mv, hosts = version_of(request), _hypervisors(request)
    host = _find(hosts, request.path_params["id"], mv)
    with_servers = mv >= (2, 53) and request.query_params.get(
        "with_servers", "").lower() in ("1", "true")
    shown = await in_session(request, lambda s, c: hypervisor_view(
        host, used_on(s, host.name), mv, detail=True, with_servers=with_servers))
    return JSONResponse({"hypervisor": shown})


async def hypervisor_servers(request: Request) -> Response:
    """GET /os-hypervisors/{pattern}/servers and /search (before 2.53)."""
    mv, hosts = version_of(request), _hypervisors(request)
    if mv >= (2, 53):
        raise NotFound("The resource could not be found.")
    pattern = request.path_params["pattern"]
    found = [h for h in hosts if pattern in h.name]
    if not found:
        raise NotFound(f"No hypervisor matching '{pattern}' could be found.")
    servers = request.url.path.endswith("/servers")
    shown = await in_session(request, lambda s, c: [
        hypervisor_view(h, used_on(s, h.name), mv, detail=False, with_servers=servers)
        for h in found])
    return JSONResponse({"hypervisors": shown})


async def hypervisor_statistics(request: Request) -> Response:
    mv, hosts = version_of(request), _hypervisors(request)
    if mv >= (2, 88):
        raise NotFound("The resource could not be found.")

    def work(session: Session, _context: RequestContext) -> dict[str, int]:
        total = {k: 0 for k in ("count", "vcpus", "memory_mb", "local_gb", "vcpus_used",
                                "memory_mb_used", "local_gb_used", "free_ram_mb",
                                "free_disk_gb", "current_workload", "running_vms",
                                "disk_available_least")}
        for host in hosts:
            view = hypervisor_view(host, used_on(session, host.name), mv, detail=True)
            total["count"] += 1
            for key in total:
                if key != "count":
                    total[key] += int(view[key])
        return total

    return JSONResponse({"hypervisor_statistics": await in_session(request, work)})


async def hypervisor_uptime(request: Request) -> Response:
    mv, hosts = version_of(request), _hypervisors(request)
    if mv >= (2, 88):
        raise NotFound("The resource could not be found.")
    host = _find(hosts, request.path_params["id"], mv)
    body = hypervisor_view(host, Used(), mv, detail=False)
    body["uptime"] = _uptime()
    return JSONResponse({"hypervisor": body})


# -- os-services --------------------------------------------------------------

_BINARIES = (("nova-scheduler", INTERNAL_ZONE), ("nova-conductor", INTERNAL_ZONE))


def service_id_of(host: Host, binary: str, version: Version) -> Any:
    """A UUID from 2.53 on; before, an integer unique in the list: each host's index
    (among the compute hosts, or among the API hosts) times three, plus the binary's
    place (1 scheduler, 2 conductor, 3 compute)."""
    if version >= (2, 53):
        return str(uuid.uuid5(_NAMESPACE, f"{host.name}/{binary}"))
    order = [b for b, _ in _BINARIES] + ["nova-compute"]
    return (host.index - 1) * len(order) + order.index(binary) + 1 if binary in order else 0


def control_hosts(runtime: Runtime, hosts: list[Host]) -> list[Host]:
    """Where the scheduler and conductor run: `kumo up`'s own host; on PostgreSQL every
    host with API processes, up while one of them beats (kumo.agent.presence), and
    always this process's host, which is answering."""
    from kumo.compute.service import compute_of

    if compute_of(runtime).scheduling_zones() is None:
        return hosts[:1]
    from kumo.agent import registry
    from kumo.agent.wiring import host_name
    from kumo.db.engine import session_scope

    here = host_name(runtime)
    down_after = runtime.settings.agent.service_down_time
    with session_scope(runtime.sessions) as session:
        seen = {row.host: (registry.is_up(row, down_after=down_after), _stamp(row.last_seen_at))
                for row in registry.api_hosts(session)}
    seen[here] = (True, _now())
    return [Host(name=name, vcpus=0, memory_mb=0, local_gb=0, free_disk_gb=0,
                 hypervisor_version=0, index=index, state="up" if up else "down",
                 zone=INTERNAL_ZONE, updated_at=stamp)
            for index, (name, (up, stamp)) in enumerate(sorted(seen.items()), start=1)]


def services(runtime: Runtime, version: Version) -> list[dict[str, Any]]:
    """nova's services as they run inside kumo: scheduler and conductor on each host
    with API processes, one compute per compute host."""
    hosts = compute_hosts(runtime)
    rows = [(b, here, zone) for here in control_hosts(runtime, hosts) for b, zone in _BINARIES]
    rows += [("nova-compute", h, h.zone) for h in hosts]
    shown = []
    for binary, host, zone in rows:
        entry: dict[str, Any] = {
            "id": service_id_of(host, binary, version), "binary": binary,
            "host": host.name, "zone": zone, "status": host.status, "state": host.state,
            "updated_at": host.updated_at or _now(), "disabled_reason": host.disabled_reason}
        if version >= (2, 11):
            entry["forced_down"] = host.forced_down
        shown.append(entry)
    return shown


async def list_services(request: Request) -> Response:
    context_of(request).require_admin()
    found = services(runtime_from(request), version_of(request))
    for key in ("binary", "host"):
        if key in request.query_params:
            found = [s for s in found if s[key] == request.query_params[key]]
    return JSONResponse({"services": found})


# -- os-availability-zone -------------------------------------------------------

async def availability_zones(request: Request) -> Response:
    context = context_of(request)
    detail = request.url.path.endswith("/detail")
    if not detail:
        names = sorted({h.zone for h in compute_hosts(runtime_from(request))} or {ZONE})
        return JSONResponse({"availabilityZoneInfo": [
            {"zoneName": name, "zoneState": {"available": True}, "hosts": None}
            for name in names]})
    context.require_admin()
    zones: dict[str, dict[str, dict[str, Any]]] = {}
    for service in services(runtime_from(request), version_of(request)):
        zones.setdefault(service["zone"], {}).setdefault(service["host"], {})[
            service["binary"]] = {"available": service["state"] == "up",
                                  "active": service["status"] == "enabled",
                                  "updated_at": service["updated_at"]}
    return JSONResponse({"availabilityZoneInfo": [
        {"zoneName": name, "zoneState": {"available": True}, "hosts": hosts}
        for name, hosts in sorted(zones.items(), key=lambda z: z[0] != INTERNAL_ZONE)]})


def routes(prefix: str) -> list[Route]:
    h = prefix + "/os-hypervisors"
    return [
        Route(h, list_hypervisors), Route(h + "/detail", list_hypervisors),
        Route(h + "/statistics", hypervisor_statistics),
        Route(h + "/{pattern}/search", hypervisor_servers),
        Route(h + "/{pattern}/servers", hypervisor_servers),
        Route(h + "/{id}/uptime", hypervisor_uptime),
        Route(h + "/{id}", show_hypervisor),
        Route(prefix + "/os-services", list_services),
        Route(prefix + "/os-availability-zone", availability_zones),
        Route(prefix + "/os-availability-zone/detail", availability_zones),
    ]
