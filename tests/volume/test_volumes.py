"""Volumes over the Cinder API: create from nothing, an image, a snapshot or a volume;
list filters and paging; update; delete rules; who sees what."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from kumo.volume.service import VolumeService
from tests.image.conftest import upload
from tests.volume.conftest import LATEST, V3, qemu_img, wait_status

GIB = 1024**3


def virtual_size(path: Path) -> int:
    return int(json.loads(qemu_img("info", "-f", "qcow2", "--output=json", path))["virtual-size"])


def test_blank_volume_is_a_thin_qcow2_file(make_volume: Callable[..., dict[str, Any]],
                                           volumes: VolumeService) -> None:
    made = make_volume(2, name="data", description="d", metadata={"k": "v"})
    assert (made["name"], made["description"], made["size"]) == ("data", "d", 2)
    assert made["metadata"] == {"k": "v"} and made["bootable"] == "false"
    assert made["volume_type"] == "__DEFAULT__" and made["attachments"] == []
    path = volumes.driver.settings.volumes_dir / f"volume-{made['id']}"
    assert virtual_size(path) == 2 * GIB
    assert path.stat().st_blocks * 512 < 1024 * 1024  # thin: nothing written yet
    assert not list(path.parent.glob("*.part"))


@pytest.mark.parametrize(("body", "status", "text"), [
    ({"size": 0}, 400, "from 1 to"),
    ({"size": -1}, 400, "from 1 to"),
    ({"size": "#$%"}, 400, "must be an integer"),
    ({"name": "no size"}, 400, "'size' is a required property"),
    ({"size": 1, "volume_type": "ssd"}, 404, "Volume type with name ssd could not be found."),
    ({"size": 1, "snapshot_id": "6f1b3c2e-8a51-4f0e-9d7b-0c2a4e1f5a77"}, 404,
     "Snapshot 6f1b3c2e-8a51-4f0e-9d7b-0c2a4e1f5a77 could not be found."),
    ({"size": 1, "source_volid": "6f1b3c2e-8a51-4f0e-9d7b-0c2a4e1f5a77"}, 404,
     "Volume 6f1b3c2e-8a51-4f0e-9d7b-0c2a4e1f5a77 could not be found."),
    ({"size": 1, "imageRef": "6f1b3c2e-8a51-4f0e-9d7b-0c2a4e1f5a77"}, 400,
     "Invalid image identifier"),
    ({"size": 1, "availability_zone": "mars"}, 400, "Availability zone 'mars' is invalid."),
    ({"size": 1, "multiattach": True}, 400, "multiattach"),
])
def test_bad_create_requests(api: TestClient, headers: dict[str, str], body: dict[str, Any],
                             status: int, text: str) -> None:
    response = api.post(f"{V3}/volumes", json={"volume": body}, headers=headers)
    assert response.status_code == status, response.text
    assert text in response.text
    assert api.get(f"{V3}/volumes", headers=headers).json()["volumes"] == []


def test_volume_from_an_image_is_bootable_and_carries_its_metadata(
        api: TestClient, headers: dict[str, str], admin_headers: dict[str, str],
        new_image: Callable[..., dict[str, Any]], qcow2_file: Path,
        volumes: VolumeService) -> None:
    image = new_image(name="tiny", min_disk=1, os_admin_user="tiny")
    assert upload(api, admin_headers, image["id"], qcow2_file.read_bytes()).status_code == 204
    too_small = api.post(f"{V3}/volumes", json={"volume": {"size": 1, "imageRef": image["id"]}},
                         headers=headers)
    assert too_small.status_code == 202  # 64 MiB virtual fits in 1 GB
    made = wait_status(api, headers, "volume", too_small.json()["volume"]["id"], volumes)
    assert made["bootable"] == "true"
    meta = made["volume_image_metadata"]
    assert meta["image_id"] == image["id"] and meta["os_admin_user"] == "tiny"
    assert meta["disk_format"] == "qcow2"
    path = volumes.driver.settings.volumes_dir / f"volume-{made['id']}"
    assert virtual_size(path) == GIB  # grown from the image's 64 MiB to the volume's size


def test_an_image_bigger_than_the_volume_is_refused(
        api: TestClient, headers: dict[str, str], admin_headers: dict[str, str],
        new_image: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    big = tmp_path / "big.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", big, "3G")
    image = new_image(name="big")
    assert upload(api, admin_headers, image["id"], big.read_bytes()).status_code == 204
    refused = api.post(f"{V3}/volumes", json={"volume": {"size": 2, "imageRef": image["id"]}},
                       headers=headers)
    assert refused.status_code == 400
    assert "Size of specified image 3GB is larger than volume size 2GB." in refused.text


def test_clone_copies_the_data_and_stands_alone(
        api: TestClient, headers: dict[str, str], make_volume: Callable[..., dict[str, Any]],
        volumes: VolumeService) -> None:
    source = make_volume(1)
    folder = volumes.driver.settings.volumes_dir
    qemu_img("resize", "-q", "-f", "qcow2", folder / f"volume-{source['id']}", "1G")
    response = api.post(f"{V3}/volumes", json={"volume": {"source_volid": source["id"],
                                                           "size": 2}}, headers=headers)
    clone = wait_status(api, headers, "volume", response.json()["volume"]["id"], volumes)
    assert clone["source_volid"] == source["id"] and clone["size"] == 2
    info = json.loads(qemu_img("info", "-f", "qcow2", "--output=json",
                               folder / f"volume-{clone['id']}"))
    assert info["virtual-size"] == 2 * GIB and "backing-filename" not in info
    smaller = api.post(f"{V3}/volumes", json={"volume": {"source_volid": clone["id"],
                                                          "size": 1}}, headers=headers)
    assert smaller.status_code == 400 and "cannot be smaller" in smaller.text


def test_list_filters_sorting_and_paging(api: TestClient, headers: dict[str, str],
                                         make_volume: Callable[..., dict[str, Any]]) -> None:
    made = [make_volume(1, name=f"v{i}", metadata={"tier": "gold" if i % 2 else "bronze"})
            for i in range(4)]
    listed = api.get(f"{V3}/volumes", headers=headers).json()["volumes"]
    assert [v["name"] for v in listed] == ["v3", "v2", "v1", "v0"]  # newest first
    assert set(listed[0]) == {"id", "name", "links"}  # the summary form
    named = api.get(f"{V3}/volumes/detail?name=v2", headers=headers).json()["volumes"]
    assert [v["id"] for v in named] == [made[2]["id"]] and named[0]["status"] == "available"
    gold = api.get(f"{V3}/volumes/detail", params={"metadata": "{'tier': 'gold'}"},
                   headers=headers).json()["volumes"]
    assert sorted(v["name"] for v in gold) == ["v1", "v3"]
    assert api.get(f"{V3}/volumes?status=available", headers=headers).json()["volumes"]
    assert api.get(f"{V3}/volumes?status=nonsense", headers=headers).status_code == 400
    assert api.get(f"{V3}/volumes?name=nothing", headers=headers).json()["volumes"] == []
    page = api.get(f"{V3}/volumes?sort=name:asc&limit=2", headers=headers).json()["volumes"]
    assert [v["name"] for v in page] == ["v0", "v1"]
    after = api.get(f"{V3}/volumes?sort=name:asc&limit=2&marker={page[-1]['id']}",
                    headers=headers).json()["volumes"]
    assert [v["name"] for v in after] == ["v2", "v3"]
    counted = api.get(f"{V3}/volumes/detail?limit=1&with_count=true", headers=headers).json()
    assert counted["count"] == 4 and len(counted["volumes"]) == 1
    summary = api.get(f"{V3}/volumes/summary", headers=headers).json()["volume-summary"]
    assert summary["total_count"] == 4 and summary["total_size"] == 4
    assert sorted(summary["metadata"]["tier"]) == ["bronze", "gold"]


def test_update_and_metadata(api: TestClient, headers: dict[str, str],
                             make_volume: Callable[..., dict[str, Any]]) -> None:
    made = make_volume(1, name="old", metadata={"a": "1"})
    url = f"{V3}/volumes/{made['id']}"
    updated = api.put(url, json={"volume": {"name": "new", "description": "about"}},
                      headers=headers).json()["volume"]
    assert (updated["name"], updated["description"]) == ("new", "about")
    assert api.put(url, json={"volume": {"size": 5}}, headers=headers).status_code == 400
    assert api.post(f"{url}/metadata", json={"metadata": {"b": "2"}}, headers=headers).json() \
        == {"metadata": {"a": "1", "b": "2"}}
    assert api.put(f"{url}/metadata", json={"metadata": {"c": "3"}}, headers=headers).json() \
        == {"metadata": {"c": "3"}}
    assert api.put(f"{url}/metadata/c", json={"meta": {"c": "4"}}, headers=headers).json() == \
        {"meta": {"c": "4"}}
    assert api.get(f"{url}/metadata/c", headers=headers).json() == {"meta": {"c": "4"}}
    assert api.delete(f"{url}/metadata/c", headers=headers).status_code == 200
    assert api.get(f"{url}/metadata/c", headers=headers).status_code == 404
    too_long = api.post(f"{url}/metadata", json={"metadata": {"k": "x" * 256}}, headers=headers)
    assert too_long.status_code == 400


def test_other_projects_see_nothing_and_readers_change_nothing(
        api: TestClient, make_volume: Callable[..., dict[str, Any]], headers: dict[str, str],
        make_project_user: Callable[..., dict[str, str]]) -> None:
    mine = make_volume(1, name="admins")
    bob = {**make_project_user("p2", "bob"), **LATEST}
    assert api.get(f"{V3}/volumes/{mine['id']}", headers=bob).status_code == 404
    assert api.get(f"{V3}/volumes", headers=bob).json()["volumes"] == []
    assert api.get(f"{V3}/volumes?all_tenants=1", headers=bob).status_code == 403
    everyone = api.get(f"{V3}/volumes?all_tenants=1", headers=headers).json()["volumes"]
    assert [v["id"] for v in everyone] == [mine["id"]]
    reader = {**make_project_user("p2", "rita", roles=("reader",)), **LATEST}
    refused = api.post(f"{V3}/volumes", json={"volume": {"size": 1}}, headers=reader)
    assert refused.status_code == 403


def test_delete_removes_record_and_file(api: TestClient, headers: dict[str, str],
                                        make_volume: Callable[..., dict[str, Any]],
                                        volumes: VolumeService) -> None:
    made = make_volume(1)
    path = volumes.driver.settings.volumes_dir / f"volume-{made['id']}"
    assert path.exists()
    assert api.delete(f"{V3}/volumes/{made['id']}", headers=headers).status_code == 202
    volumes.wait_idle()
    assert api.get(f"{V3}/volumes/{made['id']}", headers=headers).status_code == 404
    assert not path.exists()
