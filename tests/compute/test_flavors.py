"""Flavors: seeded defaults, admin-only create/delete, nova's validation."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

F = "/compute/v2.1/flavors"


def test_defaults_are_seeded(api: TestClient, admin_headers: dict[str, str]) -> None:
    flavors = {f["name"]: f for f in api.get(f"{F}/detail", headers=admin_headers).json()[
        "flavors"]}
    assert [(f["vcpus"], f["ram"], f["disk"]) for f in flavors.values()] == [
        (1, 512, 1), (1, 2048, 20), (2, 4096, 40), (4, 8192, 80), (8, 16384, 160)]
    tiny = api.get(f"{F}/1", headers=admin_headers).json()["flavor"]
    assert tiny["name"] == "m1.tiny" and tiny["swap"] == ""
    assert api.get(f"{F}/1", headers={**admin_headers, "OpenStack-API-Version": "compute 2.75"}
                   ).json()["flavor"]["swap"] == 0


def test_create_and_delete_are_admin_only(api: TestClient, admin_headers: dict[str, str],
                                          make_project_user: Any) -> None:
    body = {"flavor": {"name": "t2", "ram": 256, "vcpus": 1, "disk": 2, "id": "t2"}}
    member = make_project_user("p1", "alice")
    assert api.post(F, json=body, headers=member).status_code == 403
    made = api.post(F, json=body, headers=admin_headers)
    assert made.status_code == 200 and made.json()["flavor"]["ram"] == 256
    assert api.post(F, json=body, headers=admin_headers).status_code == 409
    assert api.get(F, headers=member).status_code == 200
    assert api.delete(f"{F}/t2", headers=member).status_code == 403
    assert api.delete(f"{F}/t2", headers=admin_headers).status_code == 202
    assert api.get(f"{F}/t2", headers=admin_headers).status_code == 404


def test_create_validation(api: TestClient, admin_headers: dict[str, str]) -> None:
    for bad in ({"name": "x", "ram": 0, "vcpus": 1, "disk": 1},
                {"name": "x", "ram": 1, "vcpus": "many", "disk": 1},
                {"name": "", "ram": 1, "vcpus": 1, "disk": 1},
                {"ram": 1, "vcpus": 1, "disk": 1}):
        assert api.post(F, json={"flavor": bad}, headers=admin_headers).status_code == 400
    assert api.post(F, content=b"{", headers={**admin_headers, "Content-Type":
                                              "application/json"}).status_code == 400
