"""os-hypervisors, os-services, os-availability-zone: the real host's capacity, one row each."""

from __future__ import annotations

import os
import shutil
from typing import Any

from starlette.testclient import TestClient

from kumo.compute.hosts import _mem_total_mb
from kumo.compute.service import ComputeService
from kumo.runtime import Runtime
from tests.compute.test_routes import V, boot, mv


def test_hypervisor_shows_this_hosts_capacity_and_usage(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService,
        runtime: Runtime, make_project_user: Any) -> None:
    boot(api, admin_headers, compute)
    listed = api.get(f"{V}/os-hypervisors/detail", headers=admin_headers).json()["hypervisors"]
    assert len(listed) == 1
    host = listed[0]
    assert host["hypervisor_hostname"] == compute.host and host["hypervisor_type"] == "QEMU"
    assert host["vcpus"] == os.cpu_count() and host["memory_mb"] == _mem_total_mb()
    disk = shutil.disk_usage(runtime.settings.instances_path)
    assert host["local_gb"] == disk.total // 1024**3
    assert (host["vcpus_used"], host["running_vms"], host["local_gb_used"]) == (1, 1, 1)
    assert host["hypervisor_version"] > 1_000_000
    shown = api.get(f"{V}/os-hypervisors/{host['id']}", headers=admin_headers).json()
    assert shown["hypervisor"]["memory_mb_used"] == 512 + 512  # the guest and nova's reserve
    stats = api.get(f"{V}/os-hypervisors/statistics", headers=admin_headers).json()
    assert stats["hypervisor_statistics"]["count"] == 1
    new = api.get(f"{V}/os-hypervisors/detail?with_servers=true",
                  headers=mv(admin_headers, "2.88")).json()["hypervisors"][0]
    assert "vcpus" not in new and len(new["id"]) == 36 and len(new["servers"]) == 1
    member = make_project_user("hv", "carol")
    assert api.get(f"{V}/os-hypervisors", headers=member).status_code == 403


def test_services_and_zones(api: TestClient, admin_headers: dict[str, str],
                            compute: ComputeService) -> None:
    services = api.get(f"{V}/os-services", headers=admin_headers).json()["services"]
    assert {s["binary"] for s in services} == {"nova-scheduler", "nova-conductor",
                                               "nova-compute"}
    compute_row = next(s for s in services if s["binary"] == "nova-compute")
    assert (compute_row["zone"], compute_row["state"], compute_row["host"]) == (
        "nova", "up", compute.host)
    only = api.get(f"{V}/os-services?binary=nova-compute", headers=admin_headers).json()
    assert len(only["services"]) == 1
    zones = api.get(f"{V}/os-availability-zone", headers=admin_headers).json()
    assert zones["availabilityZoneInfo"] == [
        {"zoneName": "nova", "zoneState": {"available": True}, "hosts": None}]
    detail = api.get(f"{V}/os-availability-zone/detail", headers=admin_headers).json()
    names = {z["zoneName"]: z for z in detail["availabilityZoneInfo"]}
    assert "nova-compute" in names["nova"]["hosts"][compute.host]
