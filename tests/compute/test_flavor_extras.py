"""Flavor extra specs, private flavor access, and flavor update (2.55)."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from kumo.compute.service import ComputeService
from tests.compute.test_quotas import project_of
from tests.compute.test_routes import V, boot, mv, show


def test_extra_specs_reach_servers(api: TestClient, admin_headers: dict[str, str],
                                   compute: ComputeService, make_project_user: Any) -> None:
    url = f"{V}/flavors/1/os-extra_specs"
    made = api.post(url, json={"extra_specs": {"hw:cpu_policy": "shared", "n": 1}},
                    headers=admin_headers)
    assert made.status_code == 200 and made.json()["extra_specs"]["n"] == "1"
    assert api.get(url, headers=admin_headers).json()["extra_specs"] == {
        "hw:cpu_policy": "shared", "n": "1"}
    assert api.put(url + "/n", json={"n": "2"}, headers=admin_headers).json() == {"n": "2"}
    assert api.put(url + "/n", json={"m": "2"}, headers=admin_headers).status_code == 400
    assert api.delete(url + "/n", headers=admin_headers).status_code == 200
    assert api.get(url + "/n", headers=admin_headers).status_code == 404
    member = make_project_user("specs", "dave")
    assert api.post(url, json={"extra_specs": {"a": "b"}}, headers=member).status_code == 403
    flavor = api.get(f"{V}/flavors/1", headers=mv(admin_headers, "2.61")).json()["flavor"]
    assert flavor["extra_specs"] == {"hw:cpu_policy": "shared"}
    sid = boot(api, admin_headers, compute)["id"]
    assert show(api, admin_headers, sid)["flavor"]["extra_specs"] == {
        "hw:cpu_policy": "shared"}


def test_private_flavor_access_and_update(api: TestClient, admin_headers: dict[str, str],
                                          make_project_user: Any) -> None:
    body = {"flavor": {"name": "secret", "ram": 64, "vcpus": 1, "disk": 1, "id": "77",
                       "os-flavor-access:is_public": "False"}}
    assert api.post(f"{V}/flavors", json=body, headers=admin_headers).status_code == 200
    access = f"{V}/flavors/77/os-flavor-access"
    assert api.get(access, headers=admin_headers).json() == {"flavor_access": []}
    erin = make_project_user("erins", "erin")
    assert api.get(f"{V}/flavors/77", headers=erin).status_code == 404
    pid = project_of(api, erin)
    added = api.post(f"{V}/flavors/77/action", json={"addTenantAccess": {"tenant": pid}},
                     headers=admin_headers)
    assert added.json()["flavor_access"] == [{"flavor_id": "77", "tenant_id": pid}]
    assert api.post(f"{V}/flavors/77/action", json={"addTenantAccess": {"tenant": pid}},
                    headers=admin_headers).status_code == 409
    assert "77" in [f["id"] for f in api.get(f"{V}/flavors", headers=erin).json()["flavors"]]
    assert api.post(f"{V}/flavors/77/action", json={"removeTenantAccess": {"tenant": pid}},
                    headers=admin_headers).json() == {"flavor_access": []}
    assert api.get(f"{V}/flavors/77", headers=erin).status_code == 404
    assert api.get(f"{V}/flavors/1/os-flavor-access", headers=admin_headers).status_code == 404
    updated = api.put(f"{V}/flavors/77", json={"flavor": {"description": "hidden"}},
                      headers=mv(admin_headers, "2.55"))
    assert updated.json()["flavor"]["description"] == "hidden"
    assert api.put(f"{V}/flavors/77", json={"flavor": {"name": "n"}},
                   headers=mv(admin_headers, "2.55")).status_code == 400
