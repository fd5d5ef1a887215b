"""Volumes on servers through the Nova API (fake hypervisor, real volume service):
os-volume_attachments, boot from volume, delete_on_termination, what server show says."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from kumo.compute.service import ComputeService
from kumo.runtime import Runtime
from kumo.volume.service import VolumeService, volume_service_of
from tests.compute.fakes import FakeHypervisor, FakeMetadata
from tests.image.conftest import upload

V = "/compute/v2.1"
V3 = "/volume/v3"
NOVA = {"OpenStack-API-Version": "compute 2.96"}


@pytest.fixture
def compute(runtime: Runtime, hypervisor: FakeHypervisor,
            tmp_path_factory: pytest.TempPathFactory) -> Iterator[ComputeService]:
    """Compute with the fake hypervisor but the real image service (volumes read it)."""
    service = ComputeService(runtime, hypervisor, FakeMetadata(tmp_path_factory.mktemp("md")))
    runtime.services["compute"] = service
    runtime.services["hypervisor"] = hypervisor
    yield service
    service.wait_idle()


@pytest.fixture
def volumes(runtime: Runtime) -> VolumeService:
    return volume_service_of(runtime)


@pytest.fixture
def image_id(api: TestClient, admin_headers: dict[str, str], tmp_path: Path) -> str:
    import subprocess

    disk = tmp_path / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(disk), "64M"], check=True)
    made = api.post("/image/v2/images", json={
        "name": "tiny", "disk_format": "qcow2", "container_format": "bare",
        "os_admin_user": "tiny"}, headers=admin_headers).json()
    assert upload(api, admin_headers, made["id"], disk.read_bytes()).status_code == 204
    return str(made["id"])


def wait(compute: ComputeService, volumes: VolumeService) -> None:
    for _ in range(3):
        compute.wait_idle()
        volumes.wait_idle()


@pytest.fixture
def new_volume(api: TestClient, admin_headers: dict[str, str],
               volumes: VolumeService) -> Callable[..., str]:
    def make(size: int = 1, **fields: Any) -> str:
        response = api.post(f"{V3}/volumes", json={"volume": {"size": size, **fields}},
                            headers=admin_headers)
        assert response.status_code == 202, response.text
        volumes.wait_idle()
        return str(response.json()["volume"]["id"])

    return make


def boot(api: TestClient, headers: dict[str, str], compute: ComputeService,
         volumes: VolumeService, name: str = "vm", **spec: Any) -> dict[str, Any]:
    body = {"server": {"name": name, "flavorRef": "1", "networks": "auto", **spec}}
    response = api.post(f"{V}/servers", json=body, headers={**headers, **NOVA})
    assert response.status_code == 202, response.text
    wait(compute, volumes)
    shown = api.get(f"{V}/servers/{response.json()['server']['id']}",
                    headers={**headers, **NOVA}).json()["server"]
    return dict(shown)


def volume(api: TestClient, headers: dict[str, str], volume_id: str) -> dict[str, Any]:
    return dict(api.get(f"{V3}/volumes/{volume_id}", headers=headers).json()["volume"])


def test_attach_and_detach_a_running_server(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService,
        volumes: VolumeService, hypervisor: FakeHypervisor, image_id: str,
        new_volume: Callable[..., str]) -> None:
    server = boot(api, admin_headers, compute, volumes, imageRef=image_id)
    assert server["status"] == "ACTIVE"
    data = new_volume(1, name="data")
    url = f"{V}/servers/{server['id']}/os-volume_attachments"
    answer = api.post(url, json={"volumeAttachment": {"volumeId": data, "tag": "db"}},
                      headers={**admin_headers, **NOVA})
    assert answer.status_code == 200, answer.text
    attachment = answer.json()["volumeAttachment"]
    assert attachment["volumeId"] == data and attachment["device"] == "/dev/vdb"
    assert attachment["tag"] == "db" and attachment["delete_on_termination"] is False
    assert "id" not in attachment and attachment["bdm_uuid"] == attachment["attachment_id"]
    wait(compute, volumes)
    assert data in hypervisor.guests[server["id"]].plugged
    shown = volume(api, admin_headers, data)
    assert shown["status"] == "in-use"
    (entry,) = shown["attachments"]
    assert (entry["server_id"], entry["device"]) == (server["id"], "/dev/vdb")
    listed = api.get(url, headers={**admin_headers, "OpenStack-API-Version": "compute 2.1"})
    assert listed.json() == {"volumeAttachments": [
        {"id": data, "volumeId": data, "serverId": server["id"], "device": "/dev/vdb"}]}
    assert api.get(f"{V}/servers/{server['id']}", headers={**admin_headers, **NOVA}).json()[
        "server"]["os-extended-volumes:volumes_attached"] == [
        {"id": data, "delete_on_termination": False}]

    # In use: no second attachment, no delete.
    other = boot(api, admin_headers, compute, volumes, name="other", imageRef=image_id)
    again = api.post(f"{V}/servers/{other['id']}/os-volume_attachments",
                     json={"volumeAttachment": {"volumeId": data}}, headers=admin_headers)
    assert again.status_code == 400 and "must be available" in again.text
    refused = api.delete(f"{V3}/volumes/{data}", headers=admin_headers)
    assert refused.status_code == 400 and "detach it before deleting it" in refused.text

    assert api.delete(f"{url}/{data}", headers=admin_headers).status_code == 202
    wait(compute, volumes)
    assert data not in hypervisor.guests[server["id"]].plugged
    assert volume(api, admin_headers, data)["status"] == "available"
    assert api.get(f"{url}/{data}", headers=admin_headers).status_code == 404
    assert api.delete(f"{url}/{data}", headers=admin_headers).status_code == 404


def test_a_detach_the_guest_refuses_leaves_the_volume_attached_and_says_why(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService,
        volumes: VolumeService, hypervisor: FakeHypervisor, image_id: str,
        new_volume: Callable[..., str]) -> None:
    server = boot(api, admin_headers, compute, volumes, imageRef=image_id)
    data = new_volume()
    url = f"{V}/servers/{server['id']}/os-volume_attachments"
    api.post(url, json={"volumeAttachment": {"volumeId": data}}, headers=admin_headers)
    wait(compute, volumes)
    hypervisor.fail_detach = "Device detach failed for volume X: the guest did not release it"
    assert api.delete(f"{url}/{data}", headers=admin_headers).status_code == 202
    wait(compute, volumes)
    assert volume(api, admin_headers, data)["status"] == "in-use"
    actions = api.get(f"{V}/servers/{server['id']}/os-instance-actions",
                      headers=admin_headers).json()["instanceActions"]
    detach = next(a for a in actions if a["action"] == "detach_volume")
    assert "did not release it" in detach["message"]


def test_a_stopped_server_gets_its_volumes_when_it_starts(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService,
        volumes: VolumeService, hypervisor: FakeHypervisor, image_id: str,
        new_volume: Callable[..., str]) -> None:
    server = boot(api, admin_headers, compute, volumes, imageRef=image_id)
    api.post(f"{V}/servers/{server['id']}/action", json={"os-stop": None},
             headers=admin_headers)
    wait(compute, volumes)
    data = new_volume()
    api.post(f"{V}/servers/{server['id']}/os-volume_attachments",
             json={"volumeAttachment": {"volumeId": data}}, headers=admin_headers)
    wait(compute, volumes)
    assert volume(api, admin_headers, data)["status"] == "in-use"
    assert not hypervisor.guests[server["id"]].plugged
    api.post(f"{V}/servers/{server['id']}/action", json={"os-start": None},
             headers=admin_headers)
    wait(compute, volumes)
    spec = hypervisor.guests[server["id"]].spec
    assert [d.volume_id for d in spec.volumes] == [data] and spec.root_volume is None


def test_attach_in_the_wrong_state_is_409_and_too_many_is_403(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService,
        volumes: VolumeService, runtime: Runtime, hypervisor: FakeHypervisor, image_id: str,
        new_volume: Callable[..., str]) -> None:
    runtime.settings.compute.num_pcie_ports = 1
    server = boot(api, admin_headers, compute, volumes, imageRef=image_id)
    url = f"{V}/servers/{server['id']}/os-volume_attachments"
    first, second = new_volume(), new_volume()
    missing = api.post(url, json={"volumeAttachment": {
        "volumeId": "6f1b3c2e-8a51-4f0e-9d7b-0c2a4e1f5a77"}}, headers=admin_headers)
    assert missing.status_code == 404
    assert api.post(url, json={"volumeAttachment": {"volumeId": first}},
                    headers=admin_headers).status_code == 200
    wait(compute, volumes)
    full = api.post(url, json={"volumeAttachment": {"volumeId": second}}, headers=admin_headers)
    assert full.status_code == 403
    assert "maximum allowed number of disk devices (1)" in full.text
    hypervisor.fail_spawn = "no room"
    broken = boot(api, admin_headers, compute, volumes, name="broken", imageRef=image_id)
    assert broken["status"] == "ERROR"
    refused = api.post(f"{V}/servers/{broken['id']}/os-volume_attachments",
                       json={"volumeAttachment": {"volumeId": second}}, headers=admin_headers)
    assert refused.status_code == 409 and "vm_state error" in refused.text
    assert volume(api, admin_headers, second)["status"] == "available"


def test_boot_from_an_existing_volume(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService,
        volumes: VolumeService, hypervisor: FakeHypervisor, image_id: str,
        new_volume: Callable[..., str]) -> None:
    root = new_volume(1, imageRef=image_id)
    server = boot(api, admin_headers, compute, volumes, block_device_mapping_v2=[
        {"uuid": root, "boot_index": 0, "source_type": "volume", "destination_type": "volume"}])
    assert server["status"] == "ACTIVE" and server["image"] == ""
    spec = hypervisor.guests[server["id"]].spec
    assert spec.root_volume is not None and spec.root_volume.volume_id == root
    assert spec.image_id == ""
    attached = volume(api, admin_headers, root)
    assert attached["status"] == "in-use" and attached["attachments"][0]["device"] == "/dev/vda"
    url = f"{V}/servers/{server['id']}/os-volume_attachments/{root}"
    refused = api.delete(url, headers=admin_headers)
    assert refused.status_code == 400 and "Cannot detach a root device volume" in refused.text
    assert api.delete(f"{V}/servers/{server['id']}", headers=admin_headers).status_code == 204
    wait(compute, volumes)
    assert volume(api, admin_headers, root)["status"] == "available"  # kept: not asked to go


def test_boot_from_volume_made_from_an_image_and_delete_on_termination(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService,
        volumes: VolumeService, hypervisor: FakeHypervisor, image_id: str) -> None:
    server = boot(api, admin_headers, compute, volumes, block_device_mapping_v2=[
        {"uuid": image_id, "boot_index": 0, "source_type": "image",
         "destination_type": "volume", "volume_size": 2, "delete_on_termination": True}])
    assert server["status"] == "ACTIVE", server.get("fault")
    (attached,) = server["os-extended-volumes:volumes_attached"]
    assert attached["delete_on_termination"] is True
    made = volume(api, admin_headers, attached["id"])
    assert (made["size"], made["bootable"], made["status"]) == (2, "true", "in-use")
    assert made["volume_image_metadata"]["os_admin_user"] == "tiny"
    assert api.delete(f"{V}/servers/{server['id']}", headers=admin_headers).status_code == 204
    wait(compute, volumes)
    assert api.get(f"{V3}/volumes/{attached['id']}", headers=admin_headers).status_code == 404


def test_bad_block_device_mappings(api: TestClient, admin_headers: dict[str, str],
                                   compute: ComputeService, image_id: str) -> None:
    for mappings, text in (
        ([{"uuid": image_id, "boot_index": 0, "source_type": "image",
           "destination_type": "volume"}], "non-zero size"),
        ([{"boot_index": -1, "source_type": "blank", "destination_type": "local",
           "volume_size": 1}], "no ephemeral or swap"),
        ([{"uuid": image_id, "boot_index": 0, "source_type": "foo"}], "source_type"),
    ):
        body = {"server": {"name": "bad", "flavorRef": "1", "networks": "auto",
                           "imageRef": image_id, "block_device_mapping_v2": mappings}}
        response = api.post(f"{V}/servers", json=body, headers={**admin_headers, **NOVA})
        assert response.status_code == 400 and text in response.text, response.text


def test_snapshot_of_a_volume_backed_server_and_booting_it(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService,
        volumes: VolumeService, hypervisor: FakeHypervisor, image_id: str,
        new_volume: Callable[..., str]) -> None:
    import json

    server = boot(api, admin_headers, compute, volumes, block_device_mapping_v2=[
        {"uuid": image_id, "boot_index": 0, "source_type": "image",
         "destination_type": "volume", "volume_size": 1, "delete_on_termination": True}])
    data = new_volume(1)
    api.post(f"{V}/servers/{server['id']}/os-volume_attachments",
             json={"volumeAttachment": {"volumeId": data}}, headers=admin_headers)
    wait(compute, volumes)
    answer = api.post(f"{V}/servers/{server['id']}/action",
                      json={"createImage": {"name": "bfv-snap"}}, headers={**admin_headers,
                                                                            **NOVA})
    assert answer.status_code == 202, answer.text
    wait(compute, volumes)
    image = api.get(f"/image/v2/images/{answer.json()['image_id']}",
                    headers=admin_headers).json()
    # As nova makes it: no data, the disks as volume snapshots in block_device_mapping.
    assert image["status"] == "active" and image["size"] == 0
    assert image["bdm_v2"] == "True" and image["root_device_name"] == "/dev/vda"
    assert image["os_admin_user"] == "tiny"  # from the root volume's image
    mapping = json.loads(image["block_device_mapping"])
    assert [(m["boot_index"], m["source_type"], m["device_name"]) for m in mapping] == [
        (0, "snapshot", "/dev/vda"), (None, "snapshot", "/dev/vdb")]
    assert ("quiesced", server["id"]) in hypervisor.calls  # the disks were taken together
    snaps = api.get(f"{V3}/snapshots/detail", headers=admin_headers).json()["snapshots"]
    assert sorted(s["id"] for s in snaps) == sorted(m["snapshot_id"] for m in mapping)
    assert {s["name"] for s in snaps} == {"snapshot for bfv-snap"}
    assert api.get(f"/image/v2/images/{image['id']}/file",
                   headers=admin_headers).status_code == 204

    clone = boot(api, admin_headers, compute, volumes, name="clone", imageRef=image["id"])
    assert clone["status"] == "ACTIVE", clone.get("fault")
    assert clone["image"] == ""
    attached = clone["os-extended-volumes:volumes_attached"]
    assert len(attached) == 2 and attached[0]["delete_on_termination"] is True
    made = [volume(api, admin_headers, a["id"]) for a in attached]
    assert {v["snapshot_id"] for v in made} == {m["snapshot_id"] for m in mapping}
    spec = hypervisor.guests[clone["id"]].spec
    assert spec.root_volume is not None and spec.root_volume.volume_id == attached[0]["id"]
