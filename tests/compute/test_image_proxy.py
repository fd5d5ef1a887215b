"""Nova's image proxy API (below 2.36) over the real image service."""

from __future__ import annotations

from starlette.testclient import TestClient

from tests.compute.test_routes import V, mv


def glance_image(api: TestClient, headers: dict[str, str]) -> str:
    made = api.post("/image/v2/images", json={"name": "proxied", "disk_format": "raw",
                                               "container_format": "bare", "color": "blue"},
                    headers=headers)
    assert made.status_code == 201, made.text
    return str(made.json()["id"])


def test_list_show_metadata_delete(api: TestClient, admin_headers: dict[str, str]) -> None:
    image_id = glance_image(api, admin_headers)
    brief = api.get(f"{V}/images", headers=admin_headers).json()["images"]
    assert [i["id"] for i in brief] == [image_id] and set(brief[0]) == {"id", "name", "links"}
    detail = api.get(f"{V}/images/detail", headers=admin_headers).json()["images"][0]
    assert (detail["status"], detail["progress"], detail["metadata"]) == (
        "SAVING", 25, {"color": "blue"})
    url = f"{V}/images/{image_id}"
    assert api.get(url, headers=admin_headers).json()["image"]["minRam"] == 0
    meta = api.post(url + "/metadata", json={"metadata": {"tier": "xl"}}, headers=admin_headers)
    assert meta.status_code == 200, meta.text
    assert meta.json()["metadata"] == {"color": "blue", "tier": "xl"}
    replaced = api.put(url + "/metadata", json={"metadata": {"only": "this"}},
                       headers=admin_headers)
    assert replaced.json()["metadata"] == {"only": "this"}
    item = api.put(url + "/metadata/k", json={"meta": {"k": "v"}}, headers=admin_headers)
    assert item.json() == {"meta": {"k": "v"}}
    assert api.get(url + "/metadata/k", headers=admin_headers).json() == {"meta": {"k": "v"}}
    assert api.delete(url + "/metadata/k", headers=admin_headers).status_code == 204
    assert api.get(url + "/metadata/k", headers=admin_headers).status_code == 404
    glance = api.get(f"/image/v2/images/{image_id}", headers=admin_headers).json()
    assert glance["only"] == "this" and "color" not in glance
    assert api.get(url, headers=mv(admin_headers, "2.36")).status_code == 404
    assert api.delete(url, headers=admin_headers).status_code == 204
    assert api.get(url, headers=admin_headers).status_code == 404
