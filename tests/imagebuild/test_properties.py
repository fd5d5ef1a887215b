"""Properties read from inside an image: os-release, cloud-init's default user, kumo's file."""

from __future__ import annotations

from pathlib import Path

from kumo.imagebuild.properties import detect_properties
from tests.imagebuild.lint.images import good_tree, make_disk, write


def test_distro_and_cloud_init_default_user_later_file_wins(tmp_path: Path) -> None:
    tree = good_tree(tmp_path / "tree")
    write(tree, "/etc/os-release", 'PRETTY_NAME="Debian 12"\nID=debian\nVERSION_ID="12"\n')
    write(tree, "/etc/cloud/cloud.cfg",
          "system_info:\n  default_user:\n    name: debian\n    sudo: ALL=(ALL) NOPASSWD:ALL\n")
    write(tree, "/etc/cloud/cloud.cfg.d/90-user.cfg",
          "system_info:\n  default_user:\n    name: admin2\n")
    write(tree, "/etc/cloud/cloud.cfg.d/50-broken.cfg", "{{ not yaml")
    disk = make_disk(tree, tmp_path / "disk.qcow2", fmt="qcow2")

    assert detect_properties(disk) == {
        "os_distro": "debian",
        "os_version": "12",
        "os_admin_user": "admin2",
    }


def test_kumo_properties_file_is_read(tmp_path: Path) -> None:
    tree = good_tree(tmp_path / "tree")
    write(tree, "/etc/kumo/image-properties", "# kumo\nos_admin_user=tiny\nhw_disk_bus=virtio\n")
    disk = make_disk(tree, tmp_path / "disk.raw")

    found = detect_properties(disk, "raw")

    assert found["os_admin_user"] == "tiny"
    assert found["hw_disk_bus"] == "virtio"


def test_a_file_that_is_no_disk_states_nothing(tmp_path: Path) -> None:
    blob = tmp_path / "blob.raw"
    blob.write_bytes(b"hello" * 1000)
    assert detect_properties(blob, "raw") == {}
