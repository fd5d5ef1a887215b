"""Server create, list, update and delete as nova answers them (over the fake hypervisor)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.testclient import TestClient

from kumo.compute.service import ComputeService
from tests.compute.conftest import IMAGE_ID
from tests.compute.test_routes import V, boot, mv, show


def create(api: TestClient, headers: dict[str, str], version: str = "2.96",
           **server: Any) -> Any:
    body = {"server": {"name": "x", "imageRef": IMAGE_ID, "flavorRef": "1",
                       "networks": "auto", **server}}
    return api.post(f"{V}/servers", json=body, headers=mv(headers, version))


def test_create_answers_admin_pass_and_the_groups_sent(api: TestClient,
                                                        admin_headers: dict[str, str],
                                                        compute: ComputeService) -> None:
    made = create(api, admin_headers)
    assert made.status_code == 202
    body = made.json()["server"]
    assert len(body["adminPass"]) == 12 and body["security_groups"] == [{"name": "default"}]
    given = create(api, admin_headers, adminPass="my-pass",
                   security_groups=[{"name": "default"}]).json()["server"]
    assert given["adminPass"] == "my-pass"
    compute.wait_idle()


def test_min_max_count_and_reservation_id(api: TestClient, admin_headers: dict[str, str],
                                          compute: ComputeService) -> None:
    answer = create(api, admin_headers, name="multi", min_count=2, max_count=3,
                    return_reservation_id=True)
    assert answer.status_code == 202
    reservation = answer.json()["reservation_id"]
    compute.wait_idle()
    listed = api.get(f"{V}/servers/detail?reservation_id={reservation}",
                     headers=admin_headers).json()["servers"]
    assert sorted(s["name"] for s in listed) == ["multi-1", "multi-2", "multi-3"]
    assert {s["status"] for s in listed} == {"ACTIVE"}
    assert create(api, admin_headers, min_count=3, max_count=2).status_code == 400
    assert create(api, admin_headers, min_count=0).status_code == 400


def test_quota_caps_instances_and_multi_create(api: TestClient, admin_headers: dict[str, str],
                                               make_project_user: Any,
                                               compute: ComputeService) -> None:
    alice = make_project_user("quota-p", "alice")
    project = api.get(f"{V}/servers", headers=alice)  # the token is good
    assert project.status_code == 200
    me = api.get("/identity/v3/auth/projects", headers=alice).json()["projects"][0]["id"]
    update = api.put(f"{V}/os-quota-sets/{me}", json={"quota_set": {"instances": 2}},
                     headers=admin_headers)
    assert update.status_code == 200 and update.json()["quota_set"]["instances"] == 2
    # as many as fit between min_count and max_count
    assert create(api, alice, min_count=1, max_count=5).status_code == 202
    compute.wait_idle()
    assert len(api.get(f"{V}/servers", headers=alice).json()["servers"]) == 2
    over = create(api, alice)
    assert over.status_code == 403
    assert "Quota exceeded for instances" in over.json()["forbidden"]["message"]
    limits = api.get(f"{V}/limits", headers=alice).json()["limits"]["absolute"]
    assert (limits["maxTotalInstances"], limits["totalInstancesUsed"]) == (2, 2)
    assert limits["totalCoresUsed"] == 2 and limits["totalRAMUsed"] == 1024
    too_many_meta = create(api, admin_headers, metadata={str(i): "v" for i in range(129)})
    assert too_many_meta.status_code in (400, 403)


def test_update_returns_the_view_and_validates(api: TestClient, admin_headers: dict[str, str],
                                               compute: ComputeService) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    url = f"{V}/servers/{sid}"
    answer = api.put(url, json={"server": {"name": "new", "accessIPv4": "192.0.2.7",
                                           "accessIPv6": "2001:db8::7"}}, headers=admin_headers)
    assert answer.status_code == 200
    body = answer.json()["server"]
    assert (body["name"], body["accessIPv4"], body["accessIPv6"]) == (
        "new", "192.0.2.7", "2001:db8::7")
    assert "OS-EXT-STS:vm_state" not in body and "key_name" not in body  # before 2.75
    full = api.put(url, json={"server": {"name": "new"}}, headers=mv(admin_headers, "2.75"))
    assert "OS-EXT-STS:vm_state" in full.json()["server"]
    for bad in ({"name": "x" * 256}, {"name": ""}, {"accessIPv4": "not-an-ip"},
                {"accessIPv6": "1.2.3.4"}, {"color": "red"}):
        assert api.put(url, json={"server": bad}, headers=admin_headers).status_code == 400
    assert api.put(f"{V}/servers/nope", json={"server": {"name": "a"}},
                   headers=admin_headers).status_code == 404
    assert create(api, admin_headers, accessIPv6="not-v6").status_code == 400


def test_embedded_flavor_swap_is_an_integer(api: TestClient, admin_headers: dict[str, str],
                                            compute: ComputeService) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    assert show(api, admin_headers, sid, "2.47")["flavor"]["swap"] == 0


def test_deleted_servers_changes_since_and_markers(api: TestClient,
                                                   admin_headers: dict[str, str],
                                                   compute: ComputeService) -> None:
    first = boot(api, admin_headers, compute, name="first")["id"]
    before = datetime.now(UTC) - timedelta(seconds=1)
    time.sleep(1.1)
    second = boot(api, admin_headers, compute, name="second")["id"]
    time.sleep(1.1)
    since = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")
    api.put(f"{V}/servers/{first}", json={"server": {"name": "first-renamed"}},
            headers=admin_headers)
    changed = api.get(f"{V}/servers?changes-since={since}", headers=admin_headers).json()
    assert [s["id"] for s in changed["servers"]] == [first]
    upto = before.strftime("%Y-%m-%dT%H:%M:%SZ")
    older = api.get(f"{V}/servers?changes-before={upto}", headers=mv(admin_headers, "2.66"))
    assert older.json()["servers"] == []
    assert api.get(f"{V}/servers?changes-since=yesterday",
                   headers=admin_headers).status_code == 400
    api.delete(f"{V}/servers/{second}", headers=admin_headers)
    compute.wait_idle()
    live = api.get(f"{V}/servers/detail", headers=admin_headers).json()["servers"]
    assert [s["id"] for s in live] == [first]
    gone = api.get(f"{V}/servers/detail?deleted=True&all_tenants=1",
                   headers=admin_headers).json()["servers"]
    assert [(s["id"], s["status"]) for s in gone] == [(second, "DELETED")]
    assert gone[0]["OS-SRV-USG:terminated_at"] is not None
    assert [s["id"] for s in api.get(f"{V}/servers?changes-since={since}",
                                     headers=admin_headers).json()["servers"]] == [second,
                                                                                   first]
    # a deleted server still works as a marker
    after_marker = api.get(f"{V}/servers?marker={second}", headers=admin_headers).json()
    assert [s["id"] for s in after_marker["servers"]] == [first]
    actions = api.get(f"{V}/servers/{second}/os-instance-actions",
                      headers=mv(admin_headers, "2.21"))
    assert [a["action"] for a in actions.json()["instanceActions"]] == ["delete", "create"]
    assert api.get(f"{V}/servers/{second}/os-instance-actions",
                   headers=admin_headers).status_code == 404
    for bad in ("limit=-1", "limit=abc"):
        assert api.get(f"{V}/servers?{bad}", headers=admin_headers).status_code == 400


def test_ips_password_and_the_servers_groups(api: TestClient, admin_headers: dict[str, str],
                                             compute: ComputeService) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    ips = api.get(f"{V}/servers/{sid}/ips", headers=admin_headers).json()["addresses"]
    network, entries = next(iter(ips.items()))
    assert entries and set(entries[0]) == {"version", "addr"}
    one = api.get(f"{V}/servers/{sid}/ips/{network}", headers=admin_headers).json()
    assert one == {network: entries}
    assert api.get(f"{V}/servers/{sid}/ips/nowhere", headers=admin_headers).status_code == 404
    [nic] = api.get(f"{V}/servers/{sid}/os-interface",
                    headers=admin_headers).json()["interfaceAttachments"]
    port = api.get(f"/network/v2.0/ports/{nic['port_id']}", headers=admin_headers).json()["port"]
    assert (nic["net_id"], nic["mac_addr"], nic["port_state"]) == (
        port["network_id"], port["mac_address"], port["status"])
    assert nic["fixed_ips"] == port["fixed_ips"]
    assert api.get(f"{V}/servers/{sid}/os-interface/{port['id']}",
                   headers=admin_headers).json() == {"interfaceAttachment": nic}
    assert api.get(f"{V}/servers/{sid}/os-interface/{sid}",
                   headers=admin_headers).status_code == 404
    assert api.get(f"{V}/servers/{sid}/os-server-password",
                   headers=admin_headers).json() == {"password": ""}
    groups = api.get(f"{V}/servers/{sid}/os-security-groups", headers=admin_headers).json()
    assert [g["name"] for g in groups["security_groups"]] == ["default"]
    made = api.post(f"{V}/os-security-groups", json={"security_group": {
        "name": "proxied", "description": "via nova"}}, headers=admin_headers)
    assert made.status_code == 200
    gid = made.json()["security_group"]["id"]
    assert api.get(f"/network/v2.0/security-groups/{gid}", headers=admin_headers).json()[
        "security_group"]["description"] == "via nova"
    assert api.delete(f"{V}/os-security-groups/{gid}", headers=admin_headers).status_code == 202


def test_server_tags(api: TestClient, admin_headers: dict[str, str],
                     compute: ComputeService) -> None:
    sid = boot(api, admin_headers, compute)["id"]
    url, headers = f"{V}/servers/{sid}/tags", mv(admin_headers, "2.26")
    assert api.put(url, json={"tags": ["a", "b"]}, headers=headers).json() == {"tags": ["a", "b"]}
    assert api.put(url + "/c", headers=headers).status_code == 201
    assert api.put(url + "/c", headers=headers).status_code == 204
    assert api.get(url + "/c", headers=headers).status_code == 204
    assert api.delete(url + "/a", headers=headers).status_code == 204
    assert api.get(url + "/a", headers=headers).status_code == 404
    assert api.get(url, headers=headers).json() == {"tags": ["b", "c"]}
    assert api.delete(url, headers=headers).status_code == 204
    assert api.get(url, headers=headers).json() == {"tags": []}
    assert api.put(url + "/x,y", headers=headers).status_code == 400
    assert api.get(url, headers=admin_headers).status_code == 404  # before 2.26
