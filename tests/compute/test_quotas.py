"""os-quota-sets and limits: nova's shapes per microversion, admin-only updates, enforcement."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from kumo.compute.service import ComputeService
from tests.compute.test_routes import V, boot, mv


def project_of(api: TestClient, headers: dict[str, str]) -> str:
    return str(api.get("/identity/v3/auth/projects", headers=headers).json()["projects"][0]["id"])


def test_quota_set_shapes_by_version(api: TestClient, admin_headers: dict[str, str]) -> None:
    pid = project_of(api, admin_headers)
    old = api.get(f"{V}/os-quota-sets/{pid}", headers=admin_headers).json()["quota_set"]
    assert old["id"] == pid and old["instances"] == 10 and old["floating_ips"] == 10
    assert old["injected_files"] == 5
    new = api.get(f"{V}/os-quota-sets/{pid}", headers=mv(admin_headers, "2.57")).json()
    assert "floating_ips" not in new["quota_set"] and "injected_files" not in new["quota_set"]
    defaults = api.get(f"{V}/os-quota-sets/{pid}/defaults", headers=admin_headers).json()
    assert defaults["quota_set"]["cores"] == 20
    detail = api.get(f"{V}/os-quota-sets/{pid}/detail", headers=admin_headers).json()
    assert detail["quota_set"]["ram"] == {"limit": 51200, "in_use": 0, "reserved": 0}


def test_only_admins_change_quotas_and_usage_bounds_them(
        api: TestClient, admin_headers: dict[str, str], make_project_user: Any,
        compute: ComputeService) -> None:
    bob = make_project_user("bobs", "bob")
    pid = project_of(api, bob)
    assert api.get(f"{V}/os-quota-sets/{pid}", headers=bob).status_code == 200
    other = project_of(api, admin_headers)
    assert api.get(f"{V}/os-quota-sets/{other}", headers=bob).status_code == 403
    change = {"quota_set": {"key_pairs": 1}}
    assert api.put(f"{V}/os-quota-sets/{pid}", json=change, headers=bob).status_code == 403
    assert api.put(f"{V}/os-quota-sets/{pid}", json=change,
                   headers=admin_headers).status_code == 200
    key = {"keypair": {"name": "k1", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFSm"
                                                    "XtvM0KXYKiGz9kGL9t9lfwBtazjmG9aKfvOjEMa1"}}
    assert api.post(f"{V}/os-keypairs", json=key, headers=bob).status_code == 200
    key["keypair"]["name"] = "k2"
    over = api.post(f"{V}/os-keypairs", json=key, headers=bob)
    assert over.status_code == 403 and "too many key pairs" in over.text
    boot(api, bob, compute)
    below = api.put(f"{V}/os-quota-sets/{pid}", json={"quota_set": {"instances": 0}},
                    headers=admin_headers)
    assert below.status_code == 400  # one server runs already
    forced = api.put(f"{V}/os-quota-sets/{pid}", json={"quota_set": {"instances": 0,
                                                                     "force": True}},
                     headers=admin_headers)
    assert forced.status_code == 200
    for bad in ({"instances": -2}, {"instances": "many"}, {"bogus": 1}):
        assert api.put(f"{V}/os-quota-sets/{pid}", json={"quota_set": bad},
                       headers=admin_headers).status_code == 400
    assert api.delete(f"{V}/os-quota-sets/{pid}", headers=admin_headers).status_code == 202
    shown = api.get(f"{V}/os-quota-sets/{pid}", headers=admin_headers).json()["quota_set"]
    assert shown["key_pairs"] == 100


def test_limits_shape(api: TestClient, admin_headers: dict[str, str]) -> None:
    old = api.get(f"{V}/limits", headers=admin_headers).json()["limits"]
    assert old["rate"] == [] and old["absolute"]["maxSecurityGroups"] == 10
    assert old["absolute"]["maxPersonality"] == 5 and old["absolute"]["maxImageMeta"] == 128
    new = api.get(f"{V}/limits", headers=mv(admin_headers, "2.57")).json()["limits"]["absolute"]
    assert not {"maxSecurityGroups", "maxPersonality", "maxImageMeta"} & set(new)
    assert new["maxServerGroups"] == 10 and new["totalServerGroupsUsed"] == 0
