"""Glance's metadata definitions API: the default catalog, namespaces and their parts."""

from __future__ import annotations

from collections.abc import Callable

from starlette.testclient import TestClient

Headers = dict[str, str]
NS = "/image/v2/metadefs/namespaces"


def test_default_catalog_describes_hw_properties(api: TestClient,
                                                 admin_headers: Headers) -> None:
    types = api.get("/image/v2/metadefs/resource_types", headers=admin_headers).json()
    assert "OS::Glance::Image" in [t["name"] for t in types["resource_types"]]
    listed = api.get(NS, params={"resource_types": "OS::Glance::Image"},
                     headers=admin_headers).json()
    names = [n["namespace"] for n in listed["namespaces"]]
    assert {"OS::Compute::LibvirtImage", "OS::OperatingSystem"} <= set(names)
    libvirt = api.get(f"{NS}/OS::Compute::LibvirtImage", headers=admin_headers).json()
    assert libvirt["resource_type_associations"][0]["prefix"] == "hw_"
    assert "virtio" in libvirt["properties"]["disk_bus"]["enum"]
    assert libvirt["protected"] is True
    refused = api.delete(f"{NS}/OS::Compute::LibvirtImage", headers=admin_headers)
    assert refused.status_code == 403


def test_namespace_with_properties_objects_tags_and_associations(
    api: TestClient, admin_headers: Headers
) -> None:
    created = api.post(NS, json={"namespace": "Lab::Things", "display_name": "Lab",
                                 "visibility": "public", "protected": True,
                                 "resource_type_associations": [{"name": "OS::Nova::Flavor"}]},
                       headers=admin_headers)
    assert created.status_code == 201, created.text
    assert api.post(NS, json={"namespace": "Lab::Things"},
                    headers=admin_headers).status_code == 409
    assert api.get(NS, params={"limit": "9" * 5000}, headers=admin_headers).status_code == 400
    one = api.get(NS, params={"limit": "1", "sort_key": "namespace", "sort_dir": "asc"},
                  headers=admin_headers).json()["namespaces"]
    assert len(one) == 1
    url = f"{NS}/Lab::Things"
    prop = api.post(f"{url}/properties", json={"name": "speed", "title": "Speed",
                                              "type": "string", "enum": ["slow", "fast"]},
                    headers=admin_headers)
    assert prop.status_code == 201 and prop.json()["title"] == "Speed"
    renamed = api.put(f"{url}/properties/speed", json={"name": "speed", "title": "Pace",
                                                       "type": "string"}, headers=admin_headers)
    assert renamed.json()["title"] == "Pace"
    bad = api.post(f"{url}/properties", json={"name": "x", "title": "X", "type": "colour"},
                   headers=admin_headers)
    assert bad.status_code == 400
    obj = api.post(f"{url}/objects", json={"name": "box", "properties": {
        "size": {"title": "Size", "type": "integer"}}}, headers=admin_headers)
    assert obj.status_code == 201 and obj.json()["self"].endswith("/objects/box")
    moved = api.put(f"{url}/objects/box", json={"name": "crate"}, headers=admin_headers)
    assert moved.json()["name"] == "crate"
    assert api.get(f"{url}/objects/box", headers=admin_headers).status_code == 404
    tags = api.post(f"{url}/tags", json={"tags": [{"name": "a"}, {"name": "b"}]},
                    headers=admin_headers)
    assert tags.status_code == 201
    assert api.post(f"{url}/tags/c", headers=admin_headers).status_code == 201
    assert api.put(f"{url}/tags/c", json={"name": "d"}, headers=admin_headers).json()[
        "name"] == "d"
    listed = api.get(f"{url}/tags", headers=admin_headers).json()["tags"]
    assert [t["name"] for t in listed] == ["a", "b", "d"]
    assoc = api.post(f"{url}/resource_types", json={"name": "OS::Glance::Image",
                                                     "prefix": "lab_"}, headers=admin_headers)
    assert assoc.status_code == 201
    shown = api.get(url, headers=admin_headers).json()
    assert [a["name"] for a in shown["resource_type_associations"]] == [
        "OS::Nova::Flavor", "OS::Glance::Image"]
    assert set(shown["properties"]) == {"speed"} and shown["objects"][0]["name"] == "crate"
    assert api.delete(f"{url}/resource_types/OS::Glance::Image",
                      headers=admin_headers).status_code == 204
    assert api.delete(url, headers=admin_headers).status_code == 403  # protected
    api.put(url, json={"namespace": "Lab::Things", "protected": False}, headers=admin_headers)
    assert api.delete(url, headers=admin_headers).status_code == 204
    assert api.get(url, headers=admin_headers).status_code == 404


def test_members_read_public_only_and_cannot_write(
    api: TestClient, admin_headers: Headers, make_project_user: Callable[..., Headers]
) -> None:
    api.post(NS, json={"namespace": "Secret::Stuff", "visibility": "private"},
             headers=admin_headers)
    member = make_project_user("p1", "mia")
    names = [n["namespace"] for n in api.get(NS, headers=member).json()["namespaces"]]
    assert "Secret::Stuff" not in names and "OS::OperatingSystem" in names
    assert api.get(f"{NS}/Secret::Stuff", headers=member).status_code == 404
    assert api.post(NS, json={"namespace": "Mine"}, headers=member).status_code == 403
    assert api.post(f"{NS}/OS::OperatingSystem/tags/x", headers=member).status_code == 403


def test_metadef_schemas_are_named_as_glance_names_them(api: TestClient,
                                                        admin_headers: Headers) -> None:
    expected = {"namespace": "namespace", "namespaces": "namespaces",
                "resource_type": "resource_type_association",
                "resource_types": "resource_type_associations", "object": "object",
                "objects": "objects", "property": "property", "properties": "properties",
                "tag": "tag", "tags": "tags"}
    for path, name in expected.items():
        response = api.get(f"/image/v2/schemas/metadefs/{path}", headers=admin_headers)
        assert response.status_code == 200 and response.json()["name"] == name
