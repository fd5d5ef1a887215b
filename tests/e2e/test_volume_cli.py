"""Volumes and image import with the real `openstack` CLI against `kumo up`, on one
real tiny guest.

One `kumo up` of this module's own (restarted once, with the guest running) and one
guest boot in all: the tiny image, imported raw and converted to qcow2 by the cloud
(seed 002's conversion), booted from a volume made from it, shared by the tests below
(module fixture), deleted with its volumes in `finally`. openstacksdk waits on statuses
(one connection, quick); every action a user types goes through the CLI.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openstack.config
import openstack.connection
import pytest

from tests.conftest import KumoProcess, start_kumo, stop_kumo
from tests.e2e.test_compute_cli import KUMO, allow_ssh, as_json, run, ssh_until

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024
MARK = "written-through-a-hot-plugged-volume"


@pytest.fixture(scope="module")
def kumo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[KumoProcess]]:
    """This module's `kumo up` (a list: a test restarts it and puts the new one in)."""
    data = tmp_path_factory.mktemp("kumo-volumes") / "data"
    data.mkdir(parents=True)
    # User-mode networking: the guest is reached through kumo's 127.0.0.1 forward.
    (data / "kumo.conf").write_text("[network]\ndriver = user\n")
    holder = [start_kumo(data, ("--no-user-config",))]
    try:
        yield holder
    finally:
        with contextlib.suppress(Exception):
            _delete_everything(holder[0])
        stop_kumo(holder[0])


def _delete_everything(kumo: KumoProcess) -> None:
    """Guests outlive `kumo up` on purpose; volumes and images cost disk: remove ours."""
    for server in as_json(kumo, "server", "list"):
        run(kumo, "server", "delete", "--wait", server["ID"], check=False)
    sdk = connect(kumo)
    for snapshot in sdk.block_storage.snapshots():
        sdk.block_storage.delete_snapshot(snapshot)
    with contextlib.suppress(AssertionError):
        wait_for("snapshots gone", lambda: not list(sdk.block_storage.snapshots()), 60)
    for volume in sdk.block_storage.volumes():
        sdk.block_storage.delete_volume(volume, force=True)
    with contextlib.suppress(AssertionError):
        wait_for("volumes gone", lambda: not list(sdk.block_storage.volumes()), 60)


def connect(kumo: KumoProcess) -> Any:
    """openstacksdk on this kumo's clouds.yaml."""
    config = openstack.config.OpenStackConfig(config_files=[str(kumo.clouds_yaml)])
    return openstack.connection.Connection(config=config.get_one(cloud="kumo"))


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 120) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"{what}: not reached within {timeout:.0f} s (last: {last})")


def volume_status(sdk: Any, name: str, status: str, timeout: float = 120) -> Any:
    def probe() -> Any:
        found = sdk.block_storage.find_volume(name, ignore_missing=False)
        assert found.status not in ("error", "error_extending"), found
        return found if found.status == status else None

    return wait_for(f"volume {name} {status}", probe, timeout)


class Guest:
    """The module's one tiny guest, booted from a volume (`--boot-from-volume`)."""

    def __init__(self, kumo: list[KumoProcess], key: Path, server: dict[str, Any]) -> None:
        self.kumo, self.key, self.server = kumo, key, server

    @property
    def cloud(self) -> KumoProcess:
        return self.kumo[0]

    def sh(self, command: str, *, check: bool = True) -> str:
        result = run(self.cloud, "server", "ssh", "vm", "-i", str(self.key), "--", "-o",
                     "BatchMode=yes", "-o", "ConnectTimeout=10", command, program=KUMO,
                     check=False, timeout=120)
        if check and result.returncode != 0:
            raise AssertionError(f"{command!r} failed: {result.stdout}{result.stderr}")
        return result.stdout

    def device_of(self, volume_id: str, present: bool = True) -> str:
        """/dev/vdX of the volume in the guest, found by its serial (the volume id)."""
        serial = volume_id[:20]
        probe = ("for d in /sys/block/vd*; do [ \"$(cat $d/serial 2>/dev/null)\" = "
                 f"{serial} ] && echo ${{d##*/}}; done; true")
        if not present:
            wait_for(f"{volume_id} gone from the guest", lambda: self.sh(probe).strip() == "")
            return ""
        return "/dev/" + str(wait_for(f"{volume_id} in the guest",
                                      lambda: self.sh(probe).strip()))


@pytest.fixture(scope="module")
def guest(kumo: list[KumoProcess], tiny_image: Path,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Guest]:
    """One tiny guest booted from a 1 GB volume made from the image, deleted afterwards
    (its root volume with it: delete_on_termination)."""
    cloud = kumo[0]
    folder = tmp_path_factory.mktemp("volume-guest")
    raw = folder / "tiny.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(tiny_image),
                    str(raw)], check=True)
    # Seed 002's conversion done by the cloud: a raw disk imported becomes qcow2.
    run(cloud, "image", "create", "--import", "--disk-format", "raw", "--container-format",
        "bare", "--file", str(raw), "--property", "os_admin_user=tiny", "tiny")
    sdk = connect(cloud)
    imported = wait_for("import", lambda: (lambda i: i if i.status == "active" else None)(
        sdk.image.find_image("tiny")))
    assert imported.disk_format == "qcow2" and imported.virtual_size == raw.stat().st_size
    assert imported.size < raw.stat().st_size
    raw.unlink()
    key = folder / "key"
    key.write_text(run(cloud, "keypair", "create", "vk").stdout)
    key.chmod(0o600)
    allow_ssh(cloud)
    try:
        server = as_json(cloud, "server", "create", "--image", "tiny", "--boot-from-volume",
                         "1", "--delete-on-termination", "--flavor", "m1.tiny",
                         "--key-name", "vk", "--wait", "vm")
        # `kumo server ssh` finds the login user in the root volume's image metadata.
        assert "Linux vm" in ssh_until(cloud, "vm", key)
        yield Guest(kumo, key, server)
    finally:
        run(kumo[0], "server", "delete", "--wait", "vm", check=False)


def test_the_cli_manages_volumes_snapshots_types_and_quotas(kumo: list[KumoProcess]) -> None:
    cloud = kumo[0]
    sdk = connect(cloud)
    try:
        (kind,) = as_json(cloud, "volume", "type", "list")
        assert kind["Name"] == "__DEFAULT__"
        made = as_json(cloud, "volume", "create", "--size", "1", "--property", "tier=gold",
                       "--description", "scratch", "scratch")
        assert (made["status"], made["size"], made["type"]) == ("creating", 1, "__DEFAULT__")
        volume_status(sdk, "scratch", "available")
        run(cloud, "volume", "set", "--name", "scratch2", "--size", "2", "scratch")
        shown = wait_for("rename and extend", lambda: (lambda v: v if v["size"] == 2 and
                         v["status"] == "available" else None)(as_json(cloud, "volume", "show",
                                                                       "scratch2")))
        assert shown["properties"] == {"tier": "gold"} and shown["bootable"] is False
        listed = as_json(cloud, "volume", "list", "--long")
        assert [(v["Name"], v["Size"], v["Type"]) for v in listed] == [
            ("scratch2", 2, "__DEFAULT__")]
        run(cloud, "volume", "snapshot", "create", "--volume", "scratch2", "s1")
        wait_for("snapshot", lambda: sdk.block_storage.find_snapshot("s1").status ==
                 "available")
        assert [s["Name"] for s in as_json(cloud, "volume", "snapshot", "list")] == ["s1"]
        refused = run(cloud, "volume", "delete", "scratch2", check=False)
        assert refused.returncode != 0 and "dependent snapshot" in refused.stderr
        run(cloud, "volume", "create", "--source", "scratch2", "clone")
        volume_status(sdk, "clone", "available")
        quota = as_json(cloud, "quota", "show", "--volume")
        assert {"Resource": "volumes", "Limit": 10} in quota
        run(cloud, "quota", "set", "--volumes", "2", "admin")
        over = run(cloud, "volume", "create", "--size", "1", "third", check=False)
        assert over.returncode != 0 and "VolumeLimitExceeded" in over.stderr
    finally:
        run(cloud, "quota", "set", "--volumes", "10", "admin", check=False)
        run(cloud, "volume", "delete", "--cascade", "scratch2", check=False)
        run(cloud, "volume", "delete", "clone", check=False)
    wait_for("deleted", lambda: not list(sdk.block_storage.volumes()))


@pytest.mark.guest
@pytest.mark.timeout(900)
def test_hot_plug_extend_snapshot_and_restart(kumo: list[KumoProcess], guest: Guest) -> None:
    """Data written through a hot-plugged volume: refused delete, online extend, a volume
    from its snapshot holding the data, attachments surviving a kumo restart."""
    cloud = kumo[0]
    sdk = connect(cloud)
    shown = as_json(cloud, "server", "show", "vm")
    assert shown["image"] == "N/A (booted from volume)"  # nova's "image": ""
    (root,) = shown["volumes_attached"]
    assert sdk.block_storage.get_volume(root["id"]).status == "in-use"

    data = as_json(cloud, "volume", "create", "--size", "1", "data")
    volume_status(sdk, "data", "available")
    run(cloud, "server", "add", "volume", "vm", "data")
    volume_status(sdk, "data", "in-use")
    disk = guest.device_of(data["id"])
    guest.sh(f"printf {MARK} | sudo dd of={disk} conv=fsync 2>/dev/null")
    refused = run(cloud, "volume", "delete", "data", check=False)
    assert refused.returncode != 0 and "detach it before deleting it" in refused.stderr

    run(cloud, "volume", "set", "--size", "2", "data")  # extended while attached
    wait_for("extend", lambda: sdk.block_storage.find_volume("data").size == 2)
    volume_status(sdk, "data", "in-use")
    wait_for("the guest sees 2 GB", lambda: guest.sh(
        f"cat /sys/block/{disk[5:]}/size").strip() == "4194304")

    run(cloud, "server", "remove", "volume", "vm", "data")  # waits for the guest to let go
    volume_status(sdk, "data", "available")
    guest.device_of(data["id"], present=False)
    # Detached first: OSC 10.5 leaves out `force` when the cloud offers 3.66, but
    # openstacksdk 4.22 creates snapshots at 3.65, so Cinder (and kumo) refuse
    # `openstack volume snapshot create --force` of an in-use volume.
    run(cloud, "volume", "snapshot", "create", "--volume", "data", "snap")
    wait_for("snapshot", lambda: sdk.block_storage.find_snapshot("snap").status == "available")
    copy = as_json(cloud, "volume", "create", "--snapshot", "snap", "copy")
    assert copy["size"] == 2
    volume_status(sdk, "copy", "available")
    run(cloud, "server", "add", "volume", "vm", "copy")
    volume_status(sdk, "copy", "in-use")
    copy_disk = guest.device_of(copy["id"])
    assert guest.sh(f"sudo dd if={copy_disk} bs={len(MARK)} count=1 2>/dev/null") == MARK
    busy = run(cloud, "volume", "snapshot", "delete", "snap", check=False)
    assert busy.returncode != 0 and "dependent volumes" in busy.stderr

    # kumo restarts; the guest and its volume do not notice, and stay manageable.
    stop_kumo(cloud)
    cloud = kumo[0] = start_kumo(cloud.data_dir, ("--no-user-config",))
    sdk = connect(cloud)
    shown = as_json(cloud, "server", "show", "vm")
    assert {v["id"] for v in shown["volumes_attached"]} == {root["id"], copy["id"]}
    attachments = sdk.block_storage.get_volume(copy["id"]).attachments
    assert [a["server_id"] for a in attachments] == [shown["id"]]
    assert guest.device_of(copy["id"]) == copy_disk
    run(cloud, "server", "remove", "volume", "vm", "copy")
    volume_status(sdk, "copy", "available")
    run(cloud, "volume", "delete", "copy")
    wait_for("copy deleted", lambda: sdk.block_storage.find_volume("copy") is None)
    run(cloud, "volume", "snapshot", "delete", "snap")
    wait_for("snap deleted", lambda: sdk.block_storage.find_snapshot("snap") is None)
    run(cloud, "volume", "delete", "data")
    wait_for("data deleted", lambda: sdk.block_storage.find_volume("data") is None)


@pytest.mark.guest
@pytest.mark.timeout(600)
def test_snapshot_of_a_volume_backed_server_and_volume_upload(kumo: list[KumoProcess],
                                                              guest: Guest) -> None:
    cloud = kumo[0]
    sdk = connect(cloud)
    snap = as_json(cloud, "server", "image", "create", "--name", "vm-snap", "--wait", "vm")
    mapping = json.loads(as_json(cloud, "image", "show", snap["id"])["properties"][
        "block_device_mapping"])
    assert mapping[0]["source_type"] == "snapshot" and mapping[0]["boot_index"] == 0
    assert sdk.block_storage.get_snapshot(mapping[0]["snapshot_id"]).status == "available"
    run(cloud, "image", "delete", "vm-snap")  # as in nova, its volume snapshots stay
    run(cloud, "volume", "snapshot", "delete", mapping[0]["snapshot_id"])
    wait_for("snapshot deleted", lambda: sdk.block_storage.find_snapshot(
        mapping[0]["snapshot_id"]) is None)

    # A volume uploaded to an image: a qcow2 image of the volume's size.
    run(cloud, "volume", "create", "--image", "tiny", "--size", "1", "bootvol")
    volume_status(sdk, "bootvol", "available")
    run(cloud, "image", "create", "--volume", "bootvol", "--disk-format", "qcow2", "from-vol")
    uploaded = wait_for("upload", lambda: (lambda i: i if i.status == "active" else None)(
        sdk.image.find_image("from-vol")))
    assert uploaded.disk_format == "qcow2" and uploaded.virtual_size == 1024 * MIB
    volume_status(sdk, "bootvol", "available")
    run(cloud, "image", "delete", "from-vol")
    run(cloud, "volume", "delete", "bootvol")


def test_deleting_the_server_deletes_its_root_volume(kumo: list[KumoProcess],
                                                     guest: Guest) -> None:
    """Last: delete_on_termination takes the root volume along."""
    cloud = kumo[0]
    sdk = connect(cloud)
    (root,) = as_json(cloud, "server", "show", "vm")["volumes_attached"]
    run(cloud, "server", "delete", "--wait", "vm")
    wait_for("root volume deleted", lambda: sdk.block_storage.find_volume(root["id"]) is None)


def test_a_crafted_image_staged_for_import_is_refused_before_conversion(
        kumo: list[KumoProcess], tiny_image: Path, tmp_path: Path) -> None:
    """A qcow2 staged as "raw": inspected before any conversion, refused, nothing kept."""
    cloud = kumo[0]
    sdk = connect(cloud)
    crafted = tmp_path / "crafted.img"
    shutil.copyfile(tiny_image, crafted)
    try:
        run(cloud, "image", "create", "--import", "--disk-format", "raw", "--container-format",
            "bare", "--file", str(crafted), "crafted")
        image = wait_for("crafted import refused", lambda: (
            lambda i: i if i.status == "queued" and i.properties.get(
                "os_glance_failed_import") == "file" else None)(sdk.image.find_image("crafted")))
        response = sdk.session.get(f"{cloud.url}/image/v2/images/{image.id}/tasks")
        (task,) = response.json()["tasks"]
        assert task["status"] == "failure"
        assert "Image content is 'qcow2' but disk_format is 'raw'" in task["message"], task
        assert not list((cloud.data_dir / "staging").glob("*"))
    finally:
        run(cloud, "image", "delete", "crafted", check=False)
