"""Uploads go through qemu-img before they go active: crafted images are refused at once.

Every refusal is a 400 with the reason; the image is `queued` again and no byte of
it is kept. Every format kumo accepts passes (and boots: tests/e2e/test_format_boot.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from kumo.runtime import Runtime
from tests.diskformat.crafted import CRAFTED, crafted_qcow2, encrypted_qcow2
from tests.diskformat.formats import QEMU_FORMATS, small_image
from tests.image.conftest import upload

Maker = Callable[..., dict[str, Any]]


def _refused(api: TestClient, headers: dict[str, str], runtime: Runtime, image: dict[str, Any],
             data: bytes) -> str:
    response = upload(api, headers, image["id"], data)
    assert response.status_code == 400, response.text
    shown = api.get(f"/image/v2/images/{image['id']}", headers=headers).json()
    assert shown["status"] == "queued" and shown["size"] is None
    assert not list(runtime.settings.images_dir.iterdir())  # no bytes kept, not even partial
    return str(response.json()["error"]["message"])


@pytest.mark.parametrize("name", [*sorted(CRAFTED), "encrypted"])
def test_crafted_qcow2_refused_at_upload(api: TestClient, admin_headers: dict[str, str],
                                         runtime: Runtime, new_image: Maker, tmp_path: Path,
                                         name: str) -> None:
    path = tmp_path / "bad.qcow2"
    data = (encrypted_qcow2(path) if name == "encrypted" else crafted_qcow2(path, name))
    message = _refused(api, admin_headers, runtime, new_image(), data.read_bytes())
    assert message.startswith("Image data refused:")


@pytest.mark.parametrize("disk_format", [*QEMU_FORMATS, "iso"])
def test_every_format_uploads(api: TestClient, admin_headers: dict[str, str],
                              new_image: Maker, tmp_path: Path, disk_format: str) -> None:
    data = small_image(tmp_path, disk_format).read_bytes()
    image = new_image(disk_format=disk_format)
    assert upload(api, admin_headers, image["id"], data).status_code == 204
    shown = api.get(f"/image/v2/images/{image['id']}", headers=admin_headers).json()
    assert shown["status"] == "active" and shown["size"] == len(data)
    assert shown["virtual_size"] >= (len(data) if disk_format == "iso" else 16 * 1024**2)


@pytest.mark.parametrize("disk_format", ["aki", "ari"])
def test_kernel_and_ramdisk_formats_refused_at_create(
        api: TestClient, admin_headers: dict[str, str], disk_format: str) -> None:
    body = {"name": "k", "disk_format": disk_format, "container_format": disk_format}
    response = api.post("/image/v2/images", json=body, headers=admin_headers)
    assert response.status_code == 400
    assert "kumo does not do" in response.json()["error"]["message"]
    schema = api.get("/image/v2/schemas/image", headers=admin_headers).json()
    assert disk_format not in schema["properties"]["disk_format"]["enum"]


def test_non_bare_containers_are_not_inspected(api: TestClient, admin_headers: dict[str, str],
                                               new_image: Maker) -> None:
    """As Glance: an ova/ovf/... container holds something else than the disk itself."""
    image = new_image(container_format="ova", disk_format="vmdk")
    assert upload(api, admin_headers, image["id"], b"not a disk").status_code == 204
