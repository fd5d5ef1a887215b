"""Nova API over HTTP (TestClient) with the fake hypervisor: shapes, states, errors."""

from __future__ import annotations

import base64
from typing import Any

from starlette.testclient import TestClient

from kumo.compute.service import ComputeService
from tests.compute.conftest import IMAGE_ID
from tests.compute.fakes import FakeHypervisor, FakeImages

V = "/compute/v2.1"


def mv(headers: dict[str, str], version: str) -> dict[str, str]:
    return {**headers, "OpenStack-API-Version": f"compute {version}"}


def boot(api: TestClient, headers: dict[str, str], compute: ComputeService, name: str = "vm1",
         **extra: Any) -> dict[str, Any]:
    body = {"server": {"name": name, "imageRef": IMAGE_ID, "flavorRef": "1",
                       "networks": "auto", **extra}}
    response = api.post(f"{V}/servers", json=body, headers=mv(headers, "2.96"))
    assert response.status_code == 202, response.text
    compute.wait_idle()
    return dict(response.json()["server"])


def show(api: TestClient, headers: dict[str, str], server_id: str, version: str = "2.96"
         ) -> dict[str, Any]:
    response = api.get(f"{V}/servers/{server_id}", headers=mv(headers, version))
    assert response.status_code == 200, response.text
    return dict(response.json()["server"])


def test_version_documents(api: TestClient) -> None:
    legacy, root = api.get("/compute/").json()["versions"]
    assert (root["id"], root["min_version"], root["version"]) == ("v2.1", "2.1", "2.96")
    assert (legacy["id"], legacy["status"]) == ("v2.0", "SUPPORTED")
    assert api.get(f"{V}/").json()["version"]["status"] == "CURRENT"
    assert api.get(legacy["links"][0]["href"].replace("http://testserver", "")).json()[
        "version"]["id"] == "v2.0"


def test_microversion_headers_and_bounds(api: TestClient, admin_headers: dict[str, str]) -> None:
    ok = api.get(f"{V}/flavors", headers={**admin_headers, "X-OpenStack-Nova-API-Version": "2.60"})
    assert ok.headers["OpenStack-API-Version"] == "compute 2.60"
    latest = api.get(f"{V}/flavors", headers=mv(admin_headers, "latest"))
    assert latest.headers["X-OpenStack-Nova-API-Version"] == "2.96"
    too_new = api.get(f"{V}/flavors", headers=mv(admin_headers, "2.97"))
    assert too_new.status_code == 406
    garbage = api.get(f"{V}/flavors", headers=mv(admin_headers, "two"))
    assert garbage.status_code == 400 and "badRequest" in garbage.json()


def test_boot_becomes_active_with_ssh_forward(api: TestClient, admin_headers: dict[str, str],
                                               compute: ComputeService,
                                               hypervisor: FakeHypervisor) -> None:
    groups = api.get("/network/v2.0/security-groups", headers=admin_headers).json()
    default = groups["security_groups"][0]["id"]
    created = boot(api, admin_headers, compute)
    server = show(api, admin_headers, created["id"])
    assert server["status"] == "ACTIVE" and server["OS-EXT-STS:power_state"] == 1
    assert "kumo:ssh" not in server["metadata"]  # nothing inbound until a rule allows it
    assert hypervisor.guests[created["id"]].spec.forwards == ()
    rule = {"security_group_rule": {"security_group_id": default, "direction": "ingress",
                                    "protocol": "tcp", "port_range_min": 22,
                                    "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"}}
    assert api.post("/network/v2.0/security-group-rules", json=rule,
                    headers=admin_headers).status_code == 201
    compute.wait_idle()
    server = show(api, admin_headers, created["id"])
    assert server["metadata"]["kumo:ssh"].startswith("127.0.0.1:")
    floating = [a for a in server["addresses"]["private"] if a["OS-EXT-IPS:type"] == "floating"]
    assert floating[0]["addr"] == "127.0.0.1"
    assert server["flavor"]["original_name"] == "m1.tiny"
    assert show(api, admin_headers, created["id"], "2.1")["flavor"]["id"] == "1"


def test_spawn_failure_sets_error_with_fault(api: TestClient, admin_headers: dict[str, str],
                                             compute: ComputeService,
                                             hypervisor: FakeHypervisor) -> None:
    hypervisor.fail_spawn = "not enough memory: 512 MB requested, 100 MB free"
    created = boot(api, admin_headers, compute)
    server = show(api, admin_headers, created["id"])
    assert server["status"] == "ERROR"
    assert "not enough memory" in server["fault"]["message"]
    stop = api.post(f"{V}/servers/{created['id']}/action", json={"os-stop": None},
                    headers=admin_headers)
    assert stop.status_code == 409 and "conflictingRequest" in stop.json()


def test_stop_start_reboot_and_wrong_state(api: TestClient, admin_headers: dict[str, str],
                                           compute: ComputeService) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    url = f"{V}/servers/{sid}/action"
    assert api.post(url, json={"os-stop": None}, headers=admin_headers).status_code == 202
    compute.wait_idle()
    assert show(api, admin_headers, sid)["status"] == "SHUTOFF"
    again = api.post(url, json={"os-stop": None}, headers=admin_headers)
    assert again.status_code == 409
    assert api.post(url, json={"os-start": None}, headers=admin_headers).status_code == 202
    compute.wait_idle()
    assert show(api, admin_headers, sid)["status"] == "ACTIVE"
    bad = api.post(url, json={"reboot": {"type": "GENTLE"}}, headers=admin_headers)
    assert bad.status_code == 400
    assert api.post(url, json={"reboot": {"type": "HARD"}}, headers=admin_headers).status_code \
        == 202
    compute.wait_idle()
    assert show(api, admin_headers, sid)["status"] == "ACTIVE"
    unknown = api.post(url, json={"os-levitate": None}, headers=admin_headers)
    assert unknown.status_code == 400


def test_console_output(api: TestClient, admin_headers: dict[str, str],
                        compute: ComputeService) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    url = f"{V}/servers/{sid}/action"
    out = api.post(url, json={"os-getConsoleOutput": {"length": 1}}, headers=admin_headers)
    assert out.json()["output"] == "login:\n"
    full = api.post(url, json={"os-getConsoleOutput": {}}, headers=admin_headers).json()
    assert "Booting vm1" in full["output"]


def test_delete_removes_guest_and_record(api: TestClient, admin_headers: dict[str, str],
                                         compute: ComputeService,
                                         hypervisor: FakeHypervisor) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    assert api.delete(f"{V}/servers/{sid}", headers=admin_headers).status_code == 204
    compute.wait_idle()
    assert sid not in hypervisor.guests
    assert api.get(f"{V}/servers/{sid}", headers=admin_headers).status_code == 404


def test_create_validation(api: TestClient, admin_headers: dict[str, str],
                           compute: ComputeService, images: FakeImages) -> None:
    def create(version: str = "2.96", **server: Any) -> Any:
        body = {"server": {"name": "x", "imageRef": IMAGE_ID, "flavorRef": "1",
                           "networks": "auto", **server}}
        return api.post(f"{V}/servers", json=body, headers=mv(admin_headers, version))

    assert create(flavorRef="999").status_code == 400
    assert create(imageRef="00000000-0000-0000-0000-000000000000").status_code == 404
    assert create(key_name="nope").json()["badRequest"]["message"] == \
        "Invalid key_name provided."
    assert create(user_data="***not base64***").status_code == 400
    big = base64.b64encode(b"x" * 70000).decode()
    assert create(user_data=big).status_code == 400
    assert create(networks=None).status_code == 400  # required from 2.37
    assert create("2.1", networks=None).status_code == 202
    images.add(images.images[IMAGE_ID].__class__(
        "22222222-2222-4222-8222-222222222222", "big", "active", min_disk=50))
    small = create(imageRef="22222222-2222-4222-8222-222222222222")
    assert small.status_code == 400 and "disk is too small" in small.text
    images.add(images.images[IMAGE_ID].__class__(
        "33333333-3333-4333-8333-333333333333", "q", "queued"))
    assert "not active" in create(imageRef="33333333-3333-4333-8333-333333333333").text
    assert create(metadata={"kumo:ssh": "x"}).status_code == 400


def test_projects_are_isolated(api: TestClient, admin_headers: dict[str, str],
                               make_project_user: Any, compute: ComputeService) -> None:
    alice = make_project_user("p-alice", "alice")
    bob = make_project_user("p-bob", "bob")
    sid = boot(api, alice, compute)["id"]
    assert api.get(f"{V}/servers/{sid}", headers=bob).status_code == 404
    assert api.get(f"{V}/servers", headers=bob).json()["servers"] == []
    assert api.delete(f"{V}/servers/{sid}", headers=bob).status_code == 404
    mine = api.get(f"{V}/servers", headers=admin_headers).json()["servers"]
    everyone = api.get(f"{V}/servers?all_tenants=1", headers=admin_headers).json()["servers"]
    assert sid not in [s["id"] for s in mine] and sid in [s["id"] for s in everyone]
    assert api.get(f"{V}/servers?all_tenants=1", headers=bob).status_code == 403


def test_list_filters(api: TestClient, admin_headers: dict[str, str],
                      compute: ComputeService) -> None:
    boot(api, admin_headers, compute, "web-1")
    boot(api, admin_headers, compute, "db-1")
    names = [s["name"] for s in api.get(f"{V}/servers/detail?name=web",
                                        headers=admin_headers).json()["servers"]]
    assert names == ["web-1"]
    shutoff = api.get(f"{V}/servers/detail?status=SHUTOFF", headers=admin_headers).json()
    assert shutoff["servers"] == []
    bad = api.get(f"{V}/servers?status=NAPPING", headers=mv(admin_headers, "2.38"))
    assert bad.status_code == 400
    assert api.get(f"{V}/servers?bogus=1", headers=mv(admin_headers, "2.75")).status_code == 400


def test_snapshot_creates_active_image(api: TestClient, admin_headers: dict[str, str],
                                       compute: ComputeService, images: FakeImages) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    url = f"{V}/servers/{sid}/action"
    response = api.post(url, json={"createImage": {"name": "snap"}},
                        headers=mv(admin_headers, "2.45"))
    assert response.status_code == 202
    image_id = response.json()["image_id"]
    compute.wait_idle()
    assert images.images[image_id].status == "active"
    assert images.images[image_id].properties["os_admin_user"] == "root"  # inherited
    assert images.uploaded[image_id].startswith(b"QFI")
    old = api.post(url, json={"createImage": {"name": "snap2"}}, headers=admin_headers)
    assert old.status_code == 202 and not old.content  # before 2.45: the id in Location
    compute.wait_idle()
    second = old.headers["Location"].rsplit("/", 1)[1]
    assert images.images[second].name == "snap2" and images.images[second].status == "active"


def test_server_metadata(api: TestClient, admin_headers: dict[str, str],
                         compute: ComputeService) -> None:
    sid = boot(api, admin_headers, compute, metadata={"role": "web"})["id"]
    url = f"{V}/servers/{sid}/metadata"
    assert api.post(url, json={"metadata": {"tier": "1"}}, headers=admin_headers).json() == {
        "metadata": {"role": "web", "tier": "1"}}
    assert api.delete(f"{url}/role", headers=admin_headers).status_code == 204
    assert api.get(f"{url}/role", headers=admin_headers).status_code == 404
    assert show(api, admin_headers, sid)["metadata"] == {"tier": "1"}


def test_extensions_list_novas_names(api: TestClient, admin_headers: dict[str, str]) -> None:
    listed = api.get(f"{V}/extensions", headers=admin_headers).json()["extensions"]
    assert {"Hosts", "Shelve", "ServerGroups"} <= {e["name"] for e in listed}
    one = api.get(f"{V}/extensions/os-rescue", headers=admin_headers).json()["extension"]
    assert one["name"] == "Rescue"
    assert api.get(f"{V}/extensions/nope", headers=admin_headers).status_code == 404
