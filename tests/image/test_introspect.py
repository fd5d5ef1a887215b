"""After an upload by any client, kumo reads os_distro/os_version/os_admin_user from inside."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from kumo.image import introspect
from tests.image.conftest import upload
from tests.imagebuild.lint.images import good_tree, make_disk, write

Maker = Callable[..., dict[str, Any]]


def debian_disk(tmp_path: Path) -> Path:
    tree = good_tree(tmp_path / "tree")
    write(tree, "/etc/os-release", 'ID=debian\nVERSION_ID="12"\n')
    write(tree, "/etc/cloud/cloud.cfg", "system_info:\n  default_user:\n    name: debian\n")
    return make_disk(tree, tmp_path / "disk.qcow2", fmt="qcow2")


def test_properties_are_read_after_the_upload(api: TestClient, admin_headers: dict[str, str],
                                              new_image: Maker, tmp_path: Path) -> None:
    image = new_image(disk_format="qcow2", os_distro="mine")
    assert upload(api, admin_headers, image["id"],
                  debian_disk(tmp_path).read_bytes()).status_code == 204
    introspect.wait_idle()
    shown = api.get(f"/image/v2/images/{image['id']}", headers=admin_headers).json()
    assert shown["os_admin_user"] == "debian" and shown["os_version"] == "12"
    assert shown["os_distro"] == "mine"  # what the uploader gave is kept


def test_a_property_set_meanwhile_is_not_overwritten(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker, tmp_path: Path,
    runtime: Any,
) -> None:
    image = new_image(disk_format="qcow2")
    upload(api, admin_headers, image["id"], debian_disk(tmp_path).read_bytes())
    introspect.wait_idle()
    url = f"/image/v2/images/{image['id']}"
    api.patch(url, content=json.dumps([{"op": "replace", "path": "/os_admin_user",
                                        "value": "root"}]),
              headers={**admin_headers,
                       "Content-Type": "application/openstack-images-v2.1-json-patch"})
    introspect.read_into_image(runtime, image["id"])  # a second reading changes nothing
    assert api.get(url, headers=admin_headers).json()["os_admin_user"] == "root"


def test_images_without_a_linux_root_get_nothing(api: TestClient, admin_headers: dict[str, str],
                                                 new_image: Maker) -> None:
    image = new_image(disk_format="raw")
    upload(api, admin_headers, image["id"], b"\0" * 4096)
    introspect.wait_idle()
    shown = api.get(f"/image/v2/images/{image['id']}", headers=admin_headers).json()
    assert not {"os_distro", "os_version", "os_admin_user"} & set(shown)
