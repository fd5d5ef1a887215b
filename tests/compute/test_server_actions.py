"""nova's other server actions over HTTP with the fake hypervisor: states, codes, guest calls."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.testclient import TestClient

from kumo.compute.images import BootImage
from kumo.compute.service import ComputeService
from kumo.runtime import Runtime
from tests.compute.conftest import IMAGE_ID
from tests.compute.fakes import FakeHypervisor, FakeImages
from tests.compute.test_routes import V, boot, mv, show

OTHER_IMAGE = "22222222-3333-4444-8555-666666666666"


def act(api: TestClient, headers: dict[str, str], sid: str, body: dict[str, Any],
        version: str = "2.1") -> Any:
    return api.post(f"{V}/servers/{sid}/action", json=body, headers=mv(headers, version))


def status(api: TestClient, headers: dict[str, str], sid: str) -> tuple[str, Any]:
    server = show(api, headers, sid)
    return server["status"], server["OS-EXT-STS:task_state"]


def test_action_on_missing_server_is_404(api: TestClient, admin_headers: dict[str, str],
                                         compute: ComputeService) -> None:
    for body in ({"os-stop": None}, {"pause": None}, {"rebuild": {"imageRef": IMAGE_ID}},
                 {"os-levitate": None}):
        missing = act(api, admin_headers, "00000000-0000-4000-8000-000000000000", body)
        assert missing.status_code == 404 and "itemNotFound" in missing.json()


def test_pause_suspend_and_their_states(api: TestClient, admin_headers: dict[str, str],
                                        compute: ComputeService,
                                        hypervisor: FakeHypervisor) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    assert act(api, admin_headers, sid, {"unpause": None}).status_code == 409
    assert act(api, admin_headers, sid, {"pause": None}).status_code == 202
    compute.wait_idle()
    assert status(api, admin_headers, sid) == ("PAUSED", None)
    assert hypervisor.guests[sid].paused
    assert show(api, admin_headers, sid)["OS-EXT-STS:power_state"] == 3
    assert act(api, admin_headers, sid, {"suspend": None}).status_code == 409
    assert act(api, admin_headers, sid, {"unpause": None}).status_code == 202
    compute.wait_idle()
    assert act(api, admin_headers, sid, {"suspend": None}).status_code == 202
    compute.wait_idle()
    assert status(api, admin_headers, sid) == ("SUSPENDED", None)
    assert hypervisor.guests[sid].saved
    assert act(api, admin_headers, sid, {"resume": None}).status_code == 202
    compute.wait_idle()
    assert status(api, admin_headers, sid) == ("ACTIVE", None)
    actions = api.get(f"{V}/servers/{sid}/os-instance-actions", headers=admin_headers).json()
    assert [a["action"] for a in actions["instanceActions"]][:4] == [
        "resume", "suspend", "unpause", "pause"]


def test_lock_keeps_members_out_but_not_admins(api: TestClient, admin_headers: dict[str, str],
                                               make_project_user: Any,
                                               compute: ComputeService) -> None:
    alice = make_project_user("p1", "alice")
    sid = boot(api, alice, compute)["id"]
    reason = act(api, alice, sid, {"lock": {"locked_reason": "maintenance"}}, "2.73")
    assert reason.status_code == 202
    shown = show(api, alice, sid)
    assert shown["locked"] is True and shown["locked_reason"] == "maintenance"
    refused = act(api, alice, sid, {"os-stop": None})
    assert refused.status_code == 409 and "locked" in refused.json()["conflictingRequest"][
        "message"]
    assert api.delete(f"{V}/servers/{sid}", headers=alice).status_code == 409
    assert act(api, admin_headers, sid, {"lock": None}).status_code == 202
    assert act(api, alice, sid, {"unlock": None}).status_code == 403  # an admin's lock
    assert act(api, admin_headers, sid, {"unlock": None}).status_code == 202
    assert show(api, alice, sid)["locked"] is False
    assert act(api, alice, sid, {"os-stop": None}).status_code == 202


def test_rebuild_makes_a_new_disk_from_the_new_image(api: TestClient,
                                                     admin_headers: dict[str, str],
                                                     compute: ComputeService,
                                                     hypervisor: FakeHypervisor,
                                                     images: FakeImages) -> None:
    images.add(BootImage(OTHER_IMAGE, "other", "active", virtual_size=2**20))
    sid = boot(api, admin_headers, compute)["id"]
    answer = act(api, admin_headers, sid, {"rebuild": {
        "imageRef": OTHER_IMAGE, "name": "renamed", "metadata": {"a": "b"},
        "adminPass": "secret", "accessIPv4": "10.0.0.9"}}, "2.19")
    assert answer.status_code == 202
    body = answer.json()["server"]
    assert body["adminPass"] == "secret" and body["status"] == "REBUILD"
    assert "OS-EXT-STS:task_state" not in body  # nova's shorter view before 2.75
    compute.wait_idle()
    server = show(api, admin_headers, sid)
    assert server["status"] == "ACTIVE" and server["image"]["id"] == OTHER_IMAGE
    assert (server["name"], server["metadata"], server["accessIPv4"]) == (
        "renamed", {"a": "b"}, "10.0.0.9")
    assert hypervisor.guests[sid].disk_image == OTHER_IMAGE
    # a stopped server stays stopped after a rebuild, as nova's
    act(api, admin_headers, sid, {"os-stop": None})
    compute.wait_idle()
    assert act(api, admin_headers, sid, {"rebuild": {"imageRef": IMAGE_ID}}).status_code == 202
    compute.wait_idle()
    assert status(api, admin_headers, sid) == ("SHUTOFF", None)
    missing = act(api, admin_headers, sid, {"rebuild": {"imageRef": "nope"}})
    assert missing.status_code in (400, 404)


def test_resize_confirm_and_revert(api: TestClient, admin_headers: dict[str, str],
                                   compute: ComputeService, hypervisor: FakeHypervisor) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    same = act(api, admin_headers, sid, {"resize": {"flavorRef": "1"}})
    assert same.status_code == 400
    assert act(api, admin_headers, sid, {"resize": {"flavorRef": "2"}}).status_code == 202
    compute.wait_idle()
    server = show(api, admin_headers, sid)
    assert server["status"] == "VERIFY_RESIZE"
    assert (server["flavor"]["original_name"], server["flavor"]["ram"]) == ("m1.small", 2048)
    assert hypervisor.guests[sid].spec.memory_mb == 2048
    assert hypervisor.guests[sid].spec.root_gb == 20
    assert act(api, admin_headers, sid, {"revertResize": None}).status_code == 202
    compute.wait_idle()
    server = show(api, admin_headers, sid)
    assert server["status"] == "ACTIVE" and server["flavor"]["ram"] == 512
    assert hypervisor.guests[sid].spec.memory_mb == 512
    act(api, admin_headers, sid, {"resize": {"flavorRef": "2"}})
    compute.wait_idle()
    assert act(api, admin_headers, sid, {"confirmResize": None}).status_code == 204
    compute.wait_idle()
    server = show(api, admin_headers, sid)
    assert server["status"] == "ACTIVE" and server["flavor"]["ram"] == 2048
    assert hypervisor.guests[sid].backup is None
    smaller = act(api, admin_headers, sid, {"resize": {"flavorRef": "1"}})
    assert smaller.status_code == 400 and "smaller disk" in smaller.text


def test_rescue_unrescue(api: TestClient, admin_headers: dict[str, str],
                         compute: ComputeService, hypervisor: FakeHypervisor) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    answer = act(api, admin_headers, sid, {"rescue": {"adminPass": "pw"}})
    assert answer.status_code == 200 and answer.json() == {"adminPass": "pw"}
    compute.wait_idle()
    assert status(api, admin_headers, sid) == ("RESCUE", None)
    assert hypervisor.guests[sid].spec.rescue_image_id == IMAGE_ID
    assert act(api, admin_headers, sid, {"rescue": None}).status_code == 409
    assert act(api, admin_headers, sid, {"unrescue": None}).status_code == 202
    compute.wait_idle()
    assert status(api, admin_headers, sid) == ("ACTIVE", None)
    assert hypervisor.guests[sid].spec.rescue_image_id is None


def test_shelve_offloads_and_unshelve_boots_the_snapshot(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService,
        hypervisor: FakeHypervisor, images: FakeImages) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    assert act(api, admin_headers, sid, {"shelve": None}).status_code == 202
    compute.wait_idle()
    assert status(api, admin_headers, sid) == ("SHELVED_OFFLOADED", None)
    assert sid not in hypervisor.guests  # the guest left the host
    shelved = [i for i in images.images.values() if i.name == "vm1-shelved"]
    assert shelved and shelved[0].status == "active"
    assert act(api, admin_headers, sid, {"unshelve": None}).status_code == 202
    compute.wait_idle()
    server = show(api, admin_headers, sid)
    assert server["status"] == "ACTIVE" and server["image"]["id"] == IMAGE_ID
    assert hypervisor.guests[sid].spec.image_id == shelved[0].id
    assert shelved[0].id in images.abandoned  # nova deletes the shelve snapshot


def test_create_backup_rotates(api: TestClient, admin_headers: dict[str, str],
                               compute: ComputeService, images: FakeImages) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    made = []
    for index in range(3):
        answer = act(api, admin_headers, sid, {"createBackup": {
            "name": f"b{index}", "backup_type": "daily", "rotation": 2}}, "2.45")
        assert answer.status_code == 202
        made.append(answer.json()["image_id"])
        compute.wait_idle()
    kept = images.backups(None, sid, "daily")  # type: ignore[arg-type]
    assert kept == made[1:] and made[0] in images.abandoned
    bad = act(api, admin_headers, sid, {"createBackup": {"name": "x", "backup_type": "d",
                                                         "rotation": -1}})
    assert bad.status_code == 400


@pytest.fixture
def soft_delete(runtime: Runtime) -> Runtime:
    runtime.settings.compute.reclaim_instance_interval = 3600
    return runtime


def test_soft_delete_restore_and_force_delete(soft_delete: Runtime, api: TestClient,
                                              admin_headers: dict[str, str],
                                              compute: ComputeService,
                                              hypervisor: FakeHypervisor) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    assert api.delete(f"{V}/servers/{sid}", headers=admin_headers).status_code == 204
    compute.wait_idle()
    assert status(api, admin_headers, sid) == ("SOFT_DELETED", None)
    assert act(api, admin_headers, sid, {"restore": None}).status_code == 202
    compute.wait_idle()
    assert status(api, admin_headers, sid) == ("ACTIVE", None)
    api.delete(f"{V}/servers/{sid}", headers=admin_headers)
    compute.wait_idle()
    compute.reclaim()  # not old enough yet
    compute.wait_idle()
    assert status(api, admin_headers, sid)[0] == "SOFT_DELETED"
    assert act(api, admin_headers, sid, {"forceDelete": None}).status_code == 202
    compute.wait_idle()
    assert api.get(f"{V}/servers/{sid}", headers=admin_headers).status_code == 404
    assert sid not in hypervisor.guests


def test_add_and_remove_security_group(api: TestClient, admin_headers: dict[str, str],
                                       compute: ComputeService) -> None:
    web = api.post("/network/v2.0/security-groups", json={"security_group": {"name": "web"}},
                   headers=admin_headers).json()["security_group"]
    sid = boot(api, admin_headers, compute)["id"]
    assert act(api, admin_headers, sid, {"addSecurityGroup": {"name": "web"}}).status_code \
        == 202
    names = [g["name"] for g in show(api, admin_headers, sid)["security_groups"]]
    assert names == ["default", "web"]
    again = act(api, admin_headers, sid, {"addSecurityGroup": {"name": "web"}})
    assert again.status_code == 400
    missing = act(api, admin_headers, sid, {"addSecurityGroup": {"name": "nope"}})
    assert missing.status_code == 404
    assert act(api, admin_headers, sid, {"removeSecurityGroup": {"name": web["id"]}}) \
        .status_code == 202
    assert [g["name"] for g in show(api, admin_headers, sid)["security_groups"]] == ["default"]
    assert act(api, admin_headers, sid, {"removeSecurityGroup": {"name": "web"}}) \
        .status_code == 400
    act(api, admin_headers, sid, {"removeSecurityGroup": {"name": "default"}})
    assert "security_groups" not in show(api, admin_headers, sid)  # nova leaves it out
