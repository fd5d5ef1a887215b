"""Regions, services and endpoints: kumo's own are built in, an admin's show up in tokens."""

from __future__ import annotations

from collections.abc import Callable

from starlette.testclient import TestClient

from tests.identity.test_domain_routes import V3

Headers = dict[str, str]


def test_registered_service_reaches_the_catalog(api: TestClient, admin_headers: Headers) -> None:
    regions = api.get(f"{V3}/regions", headers=admin_headers).json()["regions"]
    assert [r["id"] for r in regions] == ["RegionOne"]
    child = api.post(f"{V3}/regions", json={"region": {
        "id": "RegionTwo", "parent_region_id": "RegionOne", "description": "lab"}},
        headers=admin_headers)
    assert child.status_code == 201
    assert api.post(f"{V3}/regions", json={"region": {"id": "RegionTwo"}},
                    headers=admin_headers).status_code == 409
    kids = api.get(f"{V3}/regions", params={"parent_region_id": "RegionOne"},
                   headers=admin_headers).json()["regions"]
    assert [r["id"] for r in kids] == ["RegionTwo"]
    service = api.post(f"{V3}/services", json={"service": {
        "type": "object-store", "name": "swift", "description": "objects"}},
        headers=admin_headers).json()["service"]
    bad = api.post(f"{V3}/endpoints", json={"endpoint": {
        "service_id": service["id"], "interface": "public", "url": "http://s/",
        "enabled": "False"}}, headers=admin_headers)
    assert bad.status_code == 400
    endpoint = api.post(f"{V3}/endpoints", json={"endpoint": {
        "service_id": service["id"], "interface": "public", "url": "http://swift.lab/v1",
        "region_id": "RegionTwo"}}, headers=admin_headers)
    assert endpoint.status_code == 201, endpoint.text
    token = api.get(f"{V3}/auth/catalog", headers=admin_headers).json()["catalog"]
    swift = [s for s in token if s["type"] == "object-store"]
    assert swift[0]["endpoints"][0]["url"] == "http://swift.lab/v1"
    assert api.delete(f"{V3}/regions/RegionOne", headers=admin_headers).status_code == 403
    builtin = next(s for s in api.get(f"{V3}/services", params={"type": "image"},
                                      headers=admin_headers).json()["services"])
    assert builtin["name"] == "glance"
    assert api.delete(f"{V3}/services/{builtin['id']}", headers=admin_headers).status_code == 403
    assert api.delete(f"{V3}/services/{service['id']}", headers=admin_headers).status_code == 204
    after = api.get(f"{V3}/endpoints", params={"service_id": service["id"]},
                    headers=admin_headers).json()["endpoints"]
    assert after == []


def test_only_the_admin_changes_the_catalog(
    api: TestClient, make_project_user: Callable[..., Headers]
) -> None:
    member = make_project_user("p1", "mo")
    assert api.get(f"{V3}/services", headers=member).status_code == 200
    refused = api.post(f"{V3}/services", json={"service": {"type": "x"}}, headers=member)
    assert refused.status_code == 403
    assert api.get(f"{V3}/services/nope", headers=member).status_code == 404
