"""Volume actions: extend, bootable, read-only, image metadata, reset status, force
delete, upload to an image (which boots like any image), the refused legacy ones."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from starlette.testclient import TestClient

from kumo.volume.service import VolumeService
from tests.image.conftest import upload
from tests.volume.conftest import LATEST, V3, qemu_img, wait_status


def act(api: TestClient, headers: dict[str, str], volume_id: str, body: dict[str, Any],
        ) -> Any:
    return api.post(f"{V3}/volumes/{volume_id}/action", json=body, headers=headers)


def test_extend_an_available_volume(api: TestClient, headers: dict[str, str],
                                    make_volume: Callable[..., dict[str, Any]],
                                    volumes: VolumeService) -> None:
    made = make_volume(1)
    assert act(api, headers, made["id"], {"os-extend": {"new_size": 3}}).status_code == 202
    grown = wait_status(api, headers, "volume", made["id"], volumes)
    assert grown["size"] == 3
    path = volumes.driver.settings.volumes_dir / f"volume-{made['id']}"
    assert json.loads(qemu_img("info", "-f", "qcow2", "--output=json", path))[
        "virtual-size"] == 3 * 1024**3
    shrink = act(api, headers, made["id"], {"os-extend": {"new_size": 2}})
    assert shrink.status_code == 400
    assert "New size for extend must be greater than current size" in shrink.text


def test_flags_and_image_metadata(api: TestClient, headers: dict[str, str],
                                  make_volume: Callable[..., dict[str, Any]]) -> None:
    made = make_volume(1)
    assert act(api, headers, made["id"], {"os-set_bootable": {"bootable": True}}).status_code \
        == 200
    assert act(api, headers, made["id"], {"os-update_readonly_flag": {"readonly": True}}) \
        .status_code == 202
    shown = api.get(f"{V3}/volumes/{made['id']}", headers=headers).json()["volume"]
    assert shown["bootable"] == "true"
    assert act(api, headers, made["id"], {"os-set_image_metadata": {
        "metadata": {"os_admin_user": "tiny"}}}).json() == {"metadata": {"os_admin_user": "tiny"}}
    assert act(api, headers, made["id"], {"os-show_image_metadata": None}).json() == {
        "metadata": {"os_admin_user": "tiny"}}
    assert act(api, headers, made["id"], {"os-unset_image_metadata": {"key": "os_admin_user"}}) \
        .status_code == 200
    assert act(api, headers, made["id"], {"os-set_bootable": {"bootable": "maybe"}}) \
        .status_code == 400


def test_admin_reset_status_and_force_delete(api: TestClient, headers: dict[str, str],
                                             make_volume: Callable[..., dict[str, Any]],
                                             make_project_user: Callable[..., dict[str, str]],
                                             volumes: VolumeService) -> None:
    alice = {**make_project_user("p1", "alice"), **LATEST}
    made = make_volume(1, who=alice)
    assert act(api, alice, made["id"], {"os-reset_status": {"status": "error"}}) \
        .status_code == 403
    assert act(api, headers, made["id"], {"os-reset_status": {"status": "extending"}}) \
        .status_code == 202
    refused = api.delete(f"{V3}/volumes/{made['id']}", headers=alice)
    assert refused.status_code == 400 and "is extending" in refused.text
    assert act(api, headers, made["id"], {"os-force_delete": {}}).status_code == 202
    volumes.wait_idle()
    assert api.get(f"{V3}/volumes/{made['id']}", headers=headers).status_code == 404


def test_legacy_attach_actions_point_at_the_compute_api(
        api: TestClient, headers: dict[str, str],
        make_volume: Callable[..., dict[str, Any]]) -> None:
    made = make_volume(1)
    refused = act(api, headers, made["id"], {"os-attach": {"instance_uuid": "x"}})
    assert refused.status_code == 400 and "server add volume" in refused.text
    assert act(api, headers, made["id"], {"os-frobnicate": {}}).status_code == 400


def test_upload_to_image_makes_an_active_image_of_the_volume(
        api: TestClient, headers: dict[str, str], admin_headers: dict[str, str],
        new_image: Callable[..., dict[str, Any]], qcow2_file: Path,
        volumes: VolumeService) -> None:
    image = new_image(name="base", os_admin_user="tiny", os_distro="kumo")
    assert upload(api, admin_headers, image["id"], qcow2_file.read_bytes()).status_code == 204
    response = api.post(f"{V3}/volumes", json={"volume": {"size": 1, "imageRef": image["id"]}},
                        headers=headers)
    made = wait_status(api, headers, "volume", response.json()["volume"]["id"], volumes)
    for disk_format in ("qcow2", "raw"):
        answer = act(api, headers, made["id"], {"os-volume_upload_image": {
            "image_name": f"from-volume-{disk_format}", "disk_format": disk_format,
            "visibility": "shared"}})
        assert answer.status_code == 202, answer.text
        body = answer.json()["os-volume_upload_image"]
        assert body["status"] == "uploading" and body["disk_format"] == disk_format
        assert body["volume_type"]["name"] == "__DEFAULT__"
        wait_status(api, headers, "volume", made["id"], volumes)
        uploaded = api.get(f"/image/v2/images/{body['image_id']}", headers=admin_headers).json()
        assert uploaded["status"] == "active" and uploaded["disk_format"] == disk_format
        assert uploaded["virtual_size"] == 1024**3 and uploaded["visibility"] == "shared"
        # The image a volume came from lives on in the new one: the login user still works.
        assert uploaded["os_admin_user"] == "tiny" and uploaded["os_distro"] == "kumo"
        assert uploaded["min_disk"] == 1
    refused = act(api, headers, made["id"], {"os-volume_upload_image": {
        "image_name": "x", "disk_format": "iso"}})
    assert refused.status_code == 400
    assert not list(volumes.driver.settings.volumes_dir.glob(".upload-*"))
