"""ComputeService with the fake hypervisor: power-state sync, crashes, adoption."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from kumo.compute.models import Server
from kumo.compute.service import ComputeService
from kumo.db.engine import session_scope
from kumo.runtime import Runtime
from tests.compute.fakes import FakeHypervisor, FakeImages, FakeMetadata
from tests.compute.test_routes import V, boot, show


def test_killed_qemu_is_reflected_with_a_fault(api: TestClient, admin_headers: dict[str, str],
                                               compute: ComputeService,
                                               hypervisor: FakeHypervisor) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    hypervisor.kill(sid, "QEMU exited: killed by signal 9")
    compute.sync_states()
    server = show(api, admin_headers, sid)
    assert server["status"] == "SHUTOFF" and server["OS-EXT-STS:power_state"] == 6
    assert server["fault"]["message"] == "QEMU exited: killed by signal 9"
    actions = api.get(f"{V}/servers/{sid}/os-instance-actions", headers=admin_headers).json()
    assert actions["instanceActions"][0]["action"] == "stop"
    assert api.post(f"{V}/servers/{sid}/action", json={"os-start": None},
                    headers=admin_headers).status_code == 202
    compute.wait_idle()
    assert show(api, admin_headers, sid)["status"] == "ACTIVE"


def test_guest_powering_itself_off_is_shutoff(api: TestClient, admin_headers: dict[str, str],
                                              compute: ComputeService,
                                              hypervisor: FakeHypervisor) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    hypervisor.power_off(sid)
    compute.sync_states()
    server = show(api, admin_headers, sid)
    assert server["status"] == "SHUTOFF" and "fault" not in server


def test_vanished_guest_is_error(api: TestClient, admin_headers: dict[str, str],
                                 compute: ComputeService, hypervisor: FakeHypervisor) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    hypervisor.guests.clear()
    compute.sync_states()
    server = show(api, admin_headers, sid)
    assert server["status"] == "ERROR" and "no trace" in server["fault"]["message"]


def test_restart_adopts_running_and_marks_the_rest_shutoff(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService,
        hypervisor: FakeHypervisor, images: FakeImages, runtime: Runtime, tmp_path: Any) -> None:
    alive = boot(api, admin_headers, compute, "alive")["id"]
    gone = boot(api, admin_headers, compute, "gone")["id"]
    building = boot(api, admin_headers, compute, "building")["id"]
    with session_scope(runtime.sessions) as session:
        record = session.get(Server, building)
        assert record is not None
        record.vm_state, record.task_state = "building", "spawning"
    hypervisor.guests.pop(building)  # kumo died before QEMU started
    hypervisor.guests[gone].state = hypervisor.guests[gone].state.__class__.SHUTOFF
    metadata = FakeMetadata(tmp_path)
    restarted = ComputeService(runtime, hypervisor, metadata, images)
    runtime.services["compute"] = restarted
    restarted.adopt()
    assert show(api, admin_headers, alive)["status"] == "ACTIVE"
    assert metadata.open == {alive}
    assert show(api, admin_headers, gone)["status"] == "SHUTOFF"
    failed = show(api, admin_headers, building)
    assert failed["status"] == "ERROR" and "being built" in failed["fault"]["message"]


def test_orphan_guest_is_reaped_on_adopt(compute: ComputeService,
                                         hypervisor: FakeHypervisor) -> None:
    from kumo.hypervisor.driver import GuestSpec

    hypervisor.spawn(GuestSpec("orphan", "o", "img", 1, 64, 1))
    compute.adopt()
    assert "orphan" not in hypervisor.guests


def test_stopped_server_whose_guest_runs_is_powered_off(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService,
        hypervisor: FakeHypervisor) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    api.post(f"{V}/servers/{sid}/action", json={"os-stop": None}, headers=admin_headers)
    compute.wait_idle()
    hypervisor.guests[sid].state = hypervisor.guests[sid].state.__class__.RUNNING
    compute.sync_states()
    assert hypervisor.calls[-1] == ("power_off", sid)
