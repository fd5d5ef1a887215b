"""Volume snapshots: point-in-time copies, volumes made from them (copy-on-write), and
what may not be deleted while something depends on it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from kumo.volume.service import VolumeService
from tests.volume.conftest import V3, qemu_img, wait_status


def snapshot(api: TestClient, headers: dict[str, str], volumes: VolumeService,
             volume_id: str, **fields: Any) -> dict[str, Any]:
    response = api.post(f"{V3}/snapshots", json={"snapshot": {"volume_id": volume_id,
                                                              **fields}}, headers=headers)
    assert response.status_code == 202, response.text
    return wait_status(api, headers, "snapshot", response.json()["snapshot"]["id"], volumes)


def test_snapshot_then_volume_from_it(api: TestClient, headers: dict[str, str],
                                      make_volume: Callable[..., dict[str, Any]],
                                      volumes: VolumeService) -> None:
    source = make_volume(1)
    folder = volumes.driver.settings.volumes_dir
    taken = snapshot(api, headers, volumes, source["id"], name="s1", description="first",
                     metadata={"why": "test"})
    assert (taken["name"], taken["size"], taken["volume_id"]) == ("s1", 1, source["id"])
    assert taken["metadata"] == {"why": "test"}
    assert taken["os-extended-snapshot-attributes:progress"] == "100%"
    snap_info = json.loads(qemu_img("info", "-f", "qcow2", "--output=json",
                                    folder / f"snapshot-{taken['id']}"))
    assert "backing-filename" not in snap_info  # a standalone copy

    response = api.post(f"{V3}/volumes", json={"volume": {"snapshot_id": taken["id"],
                                                           "size": 2}}, headers=headers)
    made = wait_status(api, headers, "volume", response.json()["volume"]["id"], volumes)
    assert made["snapshot_id"] == taken["id"] and made["size"] == 2
    info = json.loads(qemu_img("info", "-f", "qcow2", "--output=json",
                               folder / f"volume-{made['id']}"))
    # A thin overlay on the snapshot, by a relative path (the data directory may move).
    assert info["backing-filename"] == f"snapshot-{taken['id']}"
    assert info["backing-filename-format"] == "qcow2"
    assert info["virtual-size"] == 2 * 1024**3

    smaller = api.post(f"{V3}/volumes", json={"volume": {"snapshot_id": taken["id"],
                                                          "size": 0}}, headers=headers)
    assert smaller.status_code == 400


def test_what_depends_on_something_cannot_be_deleted(
        api: TestClient, headers: dict[str, str], make_volume: Callable[..., dict[str, Any]],
        volumes: VolumeService) -> None:
    source = make_volume(1)
    taken = snapshot(api, headers, volumes, source["id"])
    refused = api.delete(f"{V3}/volumes/{source['id']}", headers=headers)
    assert refused.status_code == 400
    assert refused.json()["badRequest"]["message"].startswith("Invalid volume: ")
    assert "dependent snapshot" in refused.text

    response = api.post(f"{V3}/volumes", json={"volume": {"snapshot_id": taken["id"]}},
                        headers=headers)
    child = wait_status(api, headers, "volume", response.json()["volume"]["id"], volumes)
    busy = api.delete(f"{V3}/snapshots/{taken['id']}", headers=headers)
    assert busy.status_code == 400
    assert busy.json()["badRequest"]["message"].startswith(
        "Invalid snapshot: deleting snapshot")
    assert child["id"] in busy.text

    assert api.delete(f"{V3}/volumes/{child['id']}", headers=headers).status_code == 202
    volumes.wait_idle()
    # --cascade takes the snapshots with the volume.
    assert api.delete(f"{V3}/volumes/{source['id']}?cascade=true",
                      headers=headers).status_code == 202
    volumes.wait_idle()
    assert api.get(f"{V3}/snapshots/{taken['id']}", headers=headers).status_code == 404
    assert api.get(f"{V3}/volumes/{source['id']}", headers=headers).status_code == 404
    assert list(volumes.driver.settings.volumes_dir.iterdir()) == []


def test_snapshot_list_show_update_metadata(api: TestClient, headers: dict[str, str],
                                            make_volume: Callable[..., dict[str, Any]],
                                            volumes: VolumeService) -> None:
    a, b = make_volume(1), make_volume(1)
    first = snapshot(api, headers, volumes, a["id"], name="one", metadata={"k": "1"})
    snapshot(api, headers, volumes, b["id"], name="two")
    listed = api.get(f"{V3}/snapshots/detail", headers=headers).json()["snapshots"]
    assert [s["name"] for s in listed] == ["two", "one"]
    by_volume = api.get(f"{V3}/snapshots?volume_id={a['id']}", headers=headers).json()
    assert [s["id"] for s in by_volume["snapshots"]] == [first["id"]]
    by_meta = api.get(f"{V3}/snapshots", params={"metadata": "{'k': '1'}"},
                      headers=headers).json()["snapshots"]
    assert [s["name"] for s in by_meta] == ["one"]
    url = f"{V3}/snapshots/{first['id']}"
    shown = api.put(url, json={"snapshot": {"name": "uno", "description": "d"}},
                    headers=headers).json()["snapshot"]
    assert (shown["name"], shown["description"]) == ("uno", "d")
    assert api.post(f"{url}/metadata", json={"metadata": {"x": "y"}}, headers=headers).json() \
        == {"metadata": {"k": "1", "x": "y"}}
    assert api.get(f"{url}/metadata/x", headers=headers).json() == {"meta": {"x": "y"}}
    assert api.delete(url, headers=headers).status_code == 202
    volumes.wait_idle()
    assert api.get(url, headers=headers).status_code == 404


def test_snapshot_of_a_missing_volume_is_404(api: TestClient, headers: dict[str, str]) -> None:
    for body in ({"volume_id": "6f1b3c2e-8a51-4f0e-9d7b-0c2a4e1f5a77"}, {"volume_id": None}):
        response = api.post(f"{V3}/snapshots", json={"snapshot": body}, headers=headers)
        assert response.status_code == 404, response.text
