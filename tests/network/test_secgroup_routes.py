"""Security groups and rules over the API, and the user-mode forwards they imply."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from kumo.compute.service import ComputeService
from tests.compute.fakes import FakeHypervisor
from tests.compute.test_routes import boot

N = "/network/v2.0"


def rule(group: str, **extra: Any) -> dict[str, Any]:
    return {"security_group_rule": {"security_group_id": group, "direction": "ingress", **extra}}


def default_group(api: TestClient, headers: dict[str, str]) -> str:
    groups = api.get(f"{N}/security-groups?name=default", headers=headers).json()
    assert len(groups["security_groups"]) == 1
    return str(groups["security_groups"][0]["id"])


def test_rules_drive_forwards_of_running_servers(api: TestClient, admin_headers: dict[str, str],
                                                compute: ComputeService,
                                                hypervisor: FakeHypervisor) -> None:
    group = default_group(api, admin_headers)
    sid = boot(api, admin_headers, compute)["id"]
    tcp = api.post(f"{N}/security-group-rules", headers=admin_headers,
                   json=rule(group, protocol="tcp", port_range_min=22, port_range_max=22,
                             remote_ip_prefix="0.0.0.0/0"))
    assert tcp.status_code == 201
    icmp = api.post(f"{N}/security-group-rules", headers=admin_headers,
                    json=rule(group, protocol="icmp"))
    assert icmp.status_code == 201
    compute.wait_idle()
    assert set(hypervisor.guests[sid].ports) == {"tcp/22"}  # icmp cannot be forwarded
    duplicate = api.post(f"{N}/security-group-rules", headers=admin_headers,
                         json=rule(group, protocol="tcp", port_range_min=22, port_range_max=22,
                                   remote_ip_prefix="0.0.0.0/0"))
    assert duplicate.status_code == 409 and "NeutronError" in duplicate.json()
    assert api.delete(f"{N}/security-group-rules/{tcp.json()['security_group_rule']['id']}",
                      headers=admin_headers).status_code == 204
    compute.wait_idle()
    assert hypervisor.guests[sid].ports == {}


def test_rule_validation(api: TestClient, admin_headers: dict[str, str]) -> None:
    group = default_group(api, admin_headers)

    def post(**extra: Any) -> int:
        return api.post(f"{N}/security-group-rules", headers=admin_headers,
                        json=rule(group, **extra)).status_code

    assert post(protocol="tcp", port_range_min=30, port_range_max=20) == 400
    assert post(protocol="tcp", port_range_min=0, port_range_max=70000) == 400
    assert post(port_range_min=22, port_range_max=22) == 400  # ports without a protocol
    assert post(protocol="gre-ish") == 400
    assert post(protocol="tcp", remote_ip_prefix="not-a-cidr") == 400
    assert post(protocol="tcp", ethertype="IPv6", remote_ip_prefix="10.0.0.0/8") == 400
    wrong = api.post(f"{N}/security-group-rules", headers=admin_headers,
                     json=rule(group, direction="sideways"))
    assert wrong.status_code == 400


def test_groups_per_project(api: TestClient, admin_headers: dict[str, str],
                            make_project_user: Any, compute: ComputeService) -> None:
    alice = make_project_user("p-alice", "alice")
    bob = make_project_user("p-bob", "bob")
    created = api.post(f"{N}/security-groups", headers=alice,
                       json={"security_group": {"name": "web", "description": "http"}})
    assert created.status_code == 201
    web = created.json()["security_group"]
    assert {r["direction"] for r in web["security_group_rules"]} == {"egress"}
    assert api.get(f"{N}/security-groups/{web['id']}", headers=bob).status_code == 404
    assert [g["name"] for g in api.get(f"{N}/security-groups", headers=bob).json()[
        "security_groups"]] == ["default"]
    sid = boot(api, alice, compute, security_groups=[{"name": "web"}])["id"]
    assert api.delete(f"{N}/security-groups/{web['id']}", headers=alice).status_code == 409
    api.delete(f"/compute/v2.1/servers/{sid}", headers=alice)
    compute.wait_idle()
    assert api.delete(f"{N}/security-groups/{web['id']}", headers=alice).status_code == 204


def test_rule_list_filters_and_project_visibility(
    api: TestClient, admin_headers: dict[str, str], make_project_user: Any
) -> None:
    admins = default_group(api, admin_headers)  # before another project's group exists
    alice = make_project_user("p-rules", "alice-rules")
    mine = default_group(api, alice)
    for extra in ({"protocol": "tcp", "port_range_min": 22, "port_range_max": 22},
                  {"protocol": "icmp"}):
        assert api.post(f"{N}/security-group-rules", headers=alice,
                        json=rule(mine, **extra)).status_code == 201
    assert api.post(f"{N}/security-group-rules", headers=admin_headers,
                    json=rule(admins, protocol="udp", port_range_min=53,
                              port_range_max=53)).status_code == 201

    def listed(headers: dict[str, str], query: str) -> list[dict[str, Any]]:
        response = api.get(f"{N}/security-group-rules?{query}", headers=headers)
        assert response.status_code == 200
        return list(response.json()["security_group_rules"])

    # A member sees only its project's rules; the filters match exactly.
    assert {r["security_group_id"] for r in listed(alice, "")} == {mine}
    assert [r["protocol"] for r in listed(alice, "protocol=icmp")] == ["icmp"]
    assert listed(alice, f"security_group_id={admins}") == []
    # An admin sees every project's rules, and can narrow them to one project.
    project = api.get(f"{N}/security-groups/{mine}", headers=alice).json()
    project_id = project["security_group"]["project_id"]
    assert {r["security_group_id"] for r in listed(admin_headers, "")} >= {mine, admins}
    assert {r["security_group_id"]
            for r in listed(admin_headers, f"project_id={project_id}")} == {mine}
