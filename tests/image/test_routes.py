"""The Glance v2 API over HTTP (real routing, middleware, database and store)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from kumo.runtime import Runtime
from tests.image.conftest import upload

PATCH = {"Content-Type": "application/openstack-images-v2.1-json-patch"}
Maker = Callable[..., dict[str, Any]]


def stored_files(runtime: Runtime) -> list[str]:
    return sorted(p.name for p in runtime.settings.images_dir.iterdir())


def test_versions_document(api: TestClient) -> None:
    root = api.get("/image/")
    assert root.status_code == 300
    ids = [v["id"] for v in root.json()["versions"]]
    assert "v2.0" in ids
    assert root.json()["versions"][0]["links"][0]["href"] == "http://testserver/image/v2/"
    assert api.get("/image/versions").status_code == 200


def test_create_upload_show_download(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker, qcow2_file: Path
) -> None:
    created = api.post(
        "/image/v2/images",
        json={
            "name": "cirros",
            "disk_format": "qcow2",
            "container_format": "bare",
            "os_distro": "cirros",
        },
        headers=admin_headers,
    )
    assert created.status_code == 201
    image = created.json()
    assert created.headers["Location"].endswith(f"/image/v2/images/{image['id']}")
    assert "OpenStack-image-import-methods" in created.headers
    assert image["status"] == "queued" and image["visibility"] == "shared"
    assert image["os_distro"] == "cirros"
    data = qcow2_file.read_bytes()
    assert upload(api, admin_headers, image["id"], data).status_code == 204
    shown = api.get(f"/image/v2/images/{image['id']}", headers=admin_headers).json()
    assert shown["status"] == "active"
    assert shown["size"] == len(data)
    assert shown["virtual_size"] == 64 * 1024 * 1024
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_algo"] == "sha512"
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    got = api.get(f"/image/v2/images/{image['id']}/file", headers=admin_headers)
    assert got.status_code == 200
    assert got.content == data
    assert got.headers["Content-MD5"] == hashlib.md5(data).hexdigest()
    ranged = api.get(
        f"/image/v2/images/{image['id']}/file", headers={**admin_headers, "Range": "bytes=10-19"}
    )
    assert ranged.status_code == 206
    assert ranged.content == data[10:20]
    assert ranged.headers["Content-Range"] == f"bytes 10-19/{len(data)}"
    tail = api.get(
        f"/image/v2/images/{image['id']}/file", headers={**admin_headers, "Range": "bytes=-5"}
    )
    assert tail.content == data[-5:]
    bad = api.get(
        f"/image/v2/images/{image['id']}/file",
        headers={**admin_headers, "Range": f"bytes={len(data)}-"},
    )
    assert bad.status_code == 416


def test_download_of_an_image_without_data_is_204(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker
) -> None:
    image = new_image()
    assert api.get(f"/image/v2/images/{image['id']}/file", headers=admin_headers).status_code == 204


def test_second_upload_to_an_active_image_is_409(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker, runtime: Runtime
) -> None:
    image = new_image(disk_format="raw")
    assert upload(api, admin_headers, image["id"], b"first" * 1000).status_code == 204
    again = upload(api, admin_headers, image["id"], b"second" * 1000)
    assert again.status_code == 409
    assert "message" in again.json()["error"]
    got = api.get(f"/image/v2/images/{image['id']}/file", headers=admin_headers)
    assert got.content == b"first" * 1000


def test_upload_needs_both_formats(api: TestClient, admin_headers: dict[str, str]) -> None:
    image = api.post("/image/v2/images", json={"name": "x"}, headers=admin_headers).json()
    response = upload(api, admin_headers, image["id"], b"data")
    assert response.status_code == 400
    assert (
        api.get(f"/image/v2/images/{image['id']}", headers=admin_headers).json()["status"]
        == "queued"
    )


def test_size_header_mismatch_is_refused_and_nothing_kept(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker, runtime: Runtime
) -> None:
    image = new_image(disk_format="raw")
    response = upload(
        api, admin_headers, image["id"], b"x" * 4096, **{"x-openstack-image-size": "100"}
    )
    assert response.status_code == 400
    shown = api.get(f"/image/v2/images/{image['id']}", headers=admin_headers).json()
    assert shown["status"] == "queued" and shown["size"] is None
    assert stored_files(runtime) == []


def test_upload_with_wrong_content_type_is_415(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker
) -> None:
    image = new_image(disk_format="raw")
    response = api.put(
        f"/image/v2/images/{image['id']}/file",
        content=b"abc",
        headers={**admin_headers, "Content-Type": "text/plain"},
    )
    assert response.status_code == 415


def test_chunked_upload(api: TestClient, admin_headers: dict[str, str], new_image: Maker) -> None:
    image = new_image(disk_format="raw")
    parts = [b"a" * 100_000, b"b" * 3_000_000, b"c" * 7]
    response = api.put(
        f"/image/v2/images/{image['id']}/file",
        content=iter(parts),
        headers={**admin_headers, "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 204
    shown = api.get(f"/image/v2/images/{image['id']}", headers=admin_headers).json()
    assert shown["size"] == sum(map(len, parts))
    assert shown["checksum"] == hashlib.md5(b"".join(parts)).hexdigest()


def test_bad_create_bodies(api: TestClient, admin_headers: dict[str, str]) -> None:
    def post(body: Any, ctype: str = "application/json") -> int:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        response = api.post(
            "/image/v2/images", content=raw, headers={**admin_headers, "Content-Type": ctype}
        )
        assert response.json()["error"]["message"]
        return response.status_code

    assert post(b"{not json") == 400
    assert post({"name": "x"}, "text/plain") == 415
    assert post({"disk_format": "floppy"}) == 400
    assert post({"container_format": "zip"}) == 400
    assert post({"name": "n" * 256}) == 400
    assert post({"foo": 1}) == 400
    assert post({"foo": ["a"]}) == 400
    assert post({"status": "active"}) == 403
    assert post({"checksum": "abc"}) == 403
    assert post({"min_disk": -1}) == 400
    assert post({"min_ram": "1"}) == 400
    assert post({"protected": "yes"}) == 400
    assert post({"visibility": "everyone"}) == 400
    assert post(["a list"]) == 400
    listed = api.get("/image/v2/images", headers=admin_headers).json()["images"]
    assert listed == []


def test_unknown_image_is_404(api: TestClient, admin_headers: dict[str, str]) -> None:
    missing = "00000000-0000-0000-0000-000000000000"
    for method, path in [("GET", ""), ("DELETE", ""), ("GET", "/file"), ("GET", "/members")]:
        response = api.request(method, f"/image/v2/images/{missing}{path}", headers=admin_headers)
        assert response.status_code == 404, (method, path)
        assert response.json()["error"]["code"] == 404


def test_no_token_is_401(api: TestClient) -> None:
    response = api.get("/image/v2/images")
    assert response.status_code == 401


def test_patch_add_replace_remove(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker
) -> None:
    image = new_image(name="before")
    url = f"/image/v2/images/{image['id']}"
    ops = [
        {"op": "replace", "path": "/name", "value": "after"},
        {"op": "add", "path": "/os_admin_user", "value": "cirros"},
        {"op": "add", "path": "/tags", "value": ["b", "a"]},
        {"op": "replace", "path": "/min_ram", "value": 64},
    ]
    response = api.patch(url, content=json.dumps(ops), headers={**admin_headers, **PATCH})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == "after" and body["os_admin_user"] == "cirros"
    assert body["tags"] == ["a", "b"] and body["min_ram"] == 64
    removed = api.patch(
        url,
        content=json.dumps([{"op": "remove", "path": "/os_admin_user"}]),
        headers={**admin_headers, **PATCH},
    )
    assert "os_admin_user" not in removed.json()


def test_bad_patches_change_nothing(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker
) -> None:
    image = new_image(name="keep")
    url = f"/image/v2/images/{image['id']}"

    def patch(ops: Any, ctype: str = PATCH["Content-Type"]) -> int:
        return api.patch(
            url, content=json.dumps(ops), headers={**admin_headers, "Content-Type": ctype}
        ).status_code

    # The first op is fine, the second is not: neither is applied.
    assert (
        patch(
            [
                {"op": "replace", "path": "/name", "value": "changed"},
                {"op": "replace", "path": "/status", "value": "active"},
            ]
        )
        == 403
    )
    assert (
        patch(
            [
                {"op": "replace", "path": "/name", "value": "changed"},
                {"op": "add", "path": "/prop", "value": 5},
            ]
        )
        == 400
    )
    assert (
        patch([{"op": "replace", "path": "/name", "value": "changed"}], "application/json") == 415
    )
    assert patch([{"op": "move", "path": "/name"}]) == 400
    assert patch([{"op": "remove", "path": "/nope"}]) == 409
    assert patch([{"op": "remove", "path": "/name"}]) == 403
    assert patch({"op": "replace"}) == 400
    shown = api.get(url, headers=admin_headers).json()
    assert shown["name"] == "keep" and "prop" not in shown


def test_tags(api: TestClient, admin_headers: dict[str, str], new_image: Maker) -> None:
    image = new_image()
    url = f"/image/v2/images/{image['id']}"
    assert api.put(f"{url}/tags/red", headers=admin_headers).status_code == 204
    assert api.put(f"{url}/tags/red", headers=admin_headers).status_code == 204
    assert api.get(url, headers=admin_headers).json()["tags"] == ["red"]
    assert api.delete(f"{url}/tags/red", headers=admin_headers).status_code == 204
    assert api.delete(f"{url}/tags/red", headers=admin_headers).status_code == 404


def test_delete_removes_bytes_and_protected_is_refused(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker, runtime: Runtime
) -> None:
    image = new_image(disk_format="raw", protected=True)
    url = f"/image/v2/images/{image['id']}"
    upload(api, admin_headers, image["id"], b"z" * 5000)
    assert stored_files(runtime) == [image["id"]]
    assert api.delete(url, headers=admin_headers).status_code == 403
    api.patch(
        url,
        content=json.dumps([{"op": "replace", "path": "/protected", "value": False}]),
        headers={**admin_headers, **PATCH},
    )
    assert api.delete(url, headers=admin_headers).status_code == 204
    assert api.get(url, headers=admin_headers).status_code == 404
    assert stored_files(runtime) == []


def test_deactivate_and_reactivate(
    api: TestClient,
    admin_headers: dict[str, str],
    new_image: Maker,
    make_project_user: Callable[..., dict[str, str]],
) -> None:
    image = new_image(disk_format="raw", visibility="public")
    url = f"/image/v2/images/{image['id']}"
    assert api.post(f"{url}/actions/deactivate", headers=admin_headers).status_code == 403
    upload(api, admin_headers, image["id"], b"q" * 100)
    assert api.post(f"{url}/actions/deactivate", headers=admin_headers).status_code == 204
    assert api.get(url, headers=admin_headers).json()["status"] == "deactivated"
    other = make_project_user("p2", "bob")
    assert api.get(f"{url}/file", headers=other).status_code == 403
    assert api.post(f"{url}/actions/reactivate", headers=other).status_code == 403
    assert api.post(f"{url}/actions/reactivate", headers=admin_headers).status_code == 204
    assert api.get(f"{url}/file", headers=other).content == b"q" * 100


def test_refused_format_returns_image_to_queued_with_no_bytes(
    api: TestClient,
    admin_headers: dict[str, str],
    new_image: Maker,
    runtime: Runtime,
    qcow2_file: Path,
) -> None:
    image = new_image(disk_format="raw")
    response = upload(api, admin_headers, image["id"], qcow2_file.read_bytes())
    assert response.status_code == 400
    assert "qcow2" in response.json()["error"]["message"]
    shown = api.get(f"/image/v2/images/{image['id']}", headers=admin_headers).json()
    assert shown["status"] == "queued" and shown["checksum"] is None
    assert stored_files(runtime) == []


def test_schemas(api: TestClient, admin_headers: dict[str, str]) -> None:
    image = api.get("/image/v2/schemas/image", headers=admin_headers).json()
    assert image["name"] == "image"
    assert image["additionalProperties"] == {"type": "string"}
    assert "qcow2" in image["properties"]["disk_format"]["enum"]
    assert api.get("/image/v2/schemas/images").json()["name"] == "images"
    assert api.get("/image/v2/schemas/member").json()["name"] == "member"
    assert api.get("/image/v2/schemas/members").json()["name"] == "members"


def _bad_images(tmp: Path) -> dict[str, tuple[Path, str]]:
    from tests.diskformat.test_inspect import polyglot
    from tests.image.conftest import qemu_img

    base = tmp / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", base, "16M")
    backing = tmp / "backing.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", backing)
    datafile = tmp / "datafile.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={tmp / 'd.raw'}", datafile, "16M")
    flat = tmp / "flat.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", flat, "16M")
    return {
        "backing": (backing, "qcow2"),
        "data-file": (datafile, "qcow2"),
        "vmdk-flat": (flat, "vmdk"),
        "polyglot": (polyglot(tmp), "iso"),
    }


def test_unsafe_images_are_refused_queued_and_not_stored(
    api: TestClient,
    admin_headers: dict[str, str],
    new_image: Maker,
    runtime: Runtime,
    tmp_path: Path,
) -> None:
    for label, (path, disk_format) in _bad_images(tmp_path).items():
        image = new_image(disk_format=disk_format)
        response = upload(api, admin_headers, image["id"], path.read_bytes())
        assert response.status_code == 400, (label, response.text)
        assert "refused" in response.json()["error"]["message"]
        shown = api.get(f"/image/v2/images/{image['id']}", headers=admin_headers).json()
        assert shown["status"] == "queued", label
        assert shown["size"] is None and shown["os_hash_value"] is None, label
        assert stored_files(runtime) == [], label


def test_owner_member_deactivates_own_image_as_glance_policy_allows(
    api: TestClient, new_image: Maker, make_project_user: Callable[..., dict[str, str]]
) -> None:
    alice = make_project_user("p1", "alice")
    image = new_image(headers=alice, disk_format="raw", visibility="private")
    url = f"/image/v2/images/{image['id']}"
    upload(api, alice, image["id"], b"d" * 64)
    assert api.post(f"{url}/actions/deactivate", headers=alice).status_code == 204
    assert api.get(url, headers=alice).json()["status"] == "deactivated"
    assert api.get(f"{url}/file", headers=alice).status_code == 403
    reader = make_project_user("p1", "carol", roles=("reader",))
    assert api.post(f"{url}/actions/reactivate", headers=reader).status_code == 403
    assert api.post(f"{url}/actions/reactivate", headers=alice).status_code == 204
    assert api.get(f"{url}/file", headers=alice).content == b"d" * 64


def test_os_glance_properties_are_reserved(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker
) -> None:
    created = api.post("/image/v2/images", headers=admin_headers, json={
        "name": "x", "disk_format": "raw", "container_format": "bare",
        "os_glance_import_task": "mine"})
    assert created.status_code == 403 and "reserved" in created.text
    image = new_image()
    for op in ("add", "replace", "remove"):
        patch = {"op": op, "path": "/os_glance_foo", **({"value": "v"} if op != "remove" else {})}
        response = api.patch(f"/image/v2/images/{image['id']}", content=json.dumps([patch]),
                             headers={**admin_headers, **PATCH})
        assert response.status_code == 403, (op, response.text)
    shown = api.get(f"/image/v2/images/{image['id']}", headers=admin_headers).json()
    assert not any(key.startswith("os_glance") for key in shown)


def test_older_v2_0_json_patch_media_type(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker
) -> None:
    image = new_image()
    url = f"/image/v2/images/{image['id']}"
    old = {"Content-Type": "application/openstack-images-v2.0-json-patch"}
    body = [{"replace": "/name", "value": "renamed"}, {"add": "/color", "value": "blue"}]
    response = api.patch(url, content=json.dumps(body), headers={**admin_headers, **old})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "renamed" and response.json()["color"] == "blue"
    removed = api.patch(url, content=json.dumps([{"remove": "/color"}]),
                        headers={**admin_headers, **old})
    assert removed.status_code == 200 and "color" not in removed.json()
    bad = api.patch(url, content=json.dumps([{"replace": "/name", "add": "/x", "value": "y"}]),
                    headers={**admin_headers, **old})
    assert bad.status_code == 400
    assert api.get(url, headers=admin_headers).json()["name"] == "renamed"


def test_images_path_with_empty_id_is_404(api: TestClient, admin_headers: dict[str, str]) -> None:
    assert api.get("/image/v2/images/", headers=admin_headers).status_code == 404
    assert api.delete("/image/v2/images/", headers=admin_headers).status_code == 404
