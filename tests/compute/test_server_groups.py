"""os-server-groups: shapes by microversion, membership at create, anti-affinity placement."""

from __future__ import annotations

from starlette.testclient import TestClient

from kumo.compute.service import ComputeService
from tests.compute.conftest import IMAGE_ID
from tests.compute.test_routes import V, mv, show


def test_groups_shapes_and_members(api: TestClient, admin_headers: dict[str, str],
                                   compute: ComputeService) -> None:
    made = api.post(f"{V}/os-server-groups", json={"server_group": {
        "name": "apart", "policies": ["anti-affinity"]}}, headers=admin_headers)
    assert made.status_code == 200
    group = made.json()["server_group"]
    assert group["policies"] == ["anti-affinity"] and group["members"] == []
    new = api.get(f"{V}/os-server-groups/{group['id']}", headers=mv(admin_headers, "2.64"))
    assert new.json()["server_group"]["policy"] == "anti-affinity"
    assert "policies" not in new.json()["server_group"]
    bodies = [{"server": {"name": f"g{i}", "imageRef": IMAGE_ID, "flavorRef": "1",
                          "networks": "auto"}, "os:scheduler_hints": {"group": group["id"]}}
              for i in range(2)]
    ids = [api.post(f"{V}/servers", json=b, headers=mv(admin_headers, "2.96")).json()[
        "server"]["id"] for b in bodies]
    compute.wait_idle()
    first, second = (show(api, admin_headers, sid) for sid in ids)
    assert first["status"] == "ACTIVE" and first["server_groups"] == [group["id"]]
    # anti-affinity on a single host: nova's scheduler finds no valid host for the second
    assert second["status"] == "ERROR" and "No valid host" in second["fault"]["message"]
    members = api.get(f"{V}/os-server-groups/{group['id']}", headers=admin_headers).json()
    assert set(members["server_group"]["members"]) == set(ids)
    listed = api.get(f"{V}/os-server-groups", headers=admin_headers).json()["server_groups"]
    assert [g["id"] for g in listed] == [group["id"]]
    assert api.delete(f"{V}/os-server-groups/{group['id']}",
                      headers=admin_headers).status_code == 204
    assert api.get(f"{V}/os-server-groups/{group['id']}",
                   headers=admin_headers).status_code == 404


def test_group_validation(api: TestClient, admin_headers: dict[str, str]) -> None:
    for body, version in (({"name": "x", "policies": ["spread"]}, "2.1"),
                          ({"name": "x", "policies": ["soft-affinity"]}, "2.14"),
                          ({"name": "", "policies": ["affinity"]}, "2.1"),
                          ({"name": "x", "policy": "affinity",
                            "rules": {"max_server_per_host": 2}}, "2.64")):
        answer = api.post(f"{V}/os-server-groups", json={"server_group": body},
                          headers=mv(admin_headers, version))
        assert answer.status_code == 400, body
    ok = api.post(f"{V}/os-server-groups", json={"server_group": {
        "name": "x", "policy": "anti-affinity", "rules": {"max_server_per_host": 2}}},
        headers=mv(admin_headers, "2.64"))
    assert ok.json()["server_group"]["rules"] == {"max_server_per_host": 2}
