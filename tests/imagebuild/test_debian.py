"""The Debian cloud image: the recipe's pieces, and (slow) the built image passing lint."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kumo.errors import ToolMissing
from kumo.imagebuild import builder_for, debian
from kumo.imagebuild.lint import Severity, lint_image
from kumo.imagebuild.reader import Ext4, open_source, partitions


def test_properties_name_the_default_user() -> None:
    properties = debian.debian_image_properties()
    assert properties["os_admin_user"] == "debian"
    assert properties["hw_disk_bus"] == "virtio" and properties["os_distro"] == "debian"


def test_debian_is_a_build_kind() -> None:
    assert builder_for("debian") is debian.build


def test_customize_removes_per_machine_identity(tmp_path: Path) -> None:
    root = tmp_path / "root"
    for path, text in {
        "etc/machine-id": "0123456789abcdef\n", "var/lib/dbus/machine-id": "0123\n",
        "etc/ssh/ssh_host_ed25519_key": "secret", "etc/ssh/ssh_host_ed25519_key.pub": "pub",
        "etc/ssh/sshd_config": "PermitRootLogin no\n", "etc/resolv.conf": "nameserver 10.0.0.1\n",
        "var/log/apt/history.log": "Install: everything\n",
    }.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    (root / "etc/cloud/cloud.cfg.d").mkdir(parents=True)

    debian.customize(root, "6f0c2c1e-0000-4000-8000-000000000001")

    assert (root / "etc/machine-id").read_text() == ""
    assert not (root / "var/lib/dbus/machine-id").exists()
    assert sorted(p.name for p in (root / "etc/ssh").iterdir()) == ["sshd_config"]
    # The build host's resolver is gone; the instance's comes from systemd-resolved.
    assert os.readlink(root / "etc/resolv.conf") == "../run/systemd/resolve/stub-resolv.conf"
    assert (root / "etc/fstab").read_text().startswith(
        "UUID=6f0c2c1e-0000-4000-8000-000000000001 / ext4 ")
    cfg = (root / "etc/cloud/cloud.cfg.d/01_kumo.cfg").read_text()
    assert "locale: C.UTF-8" in cfg and "manage_etc_hosts: true" in cfg
    assert "renderers: [ networkd ]" in cfg  # applies network_data.json's MTU
    assert "OpenStack" in cfg and "ConfigDrive" in cfg and "NoCloud" in cfg and "Ec2" in cfg
    assert (root / "var/log/apt/history.log").read_text() == ""


def test_missing_tool_names_its_package(monkeypatch: pytest.MonkeyPatch,
                                        tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr("shutil.which", lambda *a, **k: None)
    with pytest.raises(ToolMissing, match="apt-get install mmdebstrap"):
        debian.build(tmp_path / "out.qcow2")


@pytest.fixture(scope="session")
def debian_image() -> Path:
    return debian.cached_image()


@pytest.mark.slow
def test_built_image_is_a_cloud_image(debian_image: Path, tmp_path: Path) -> None:
    findings = lint_image(debian_image)
    assert [f for f in findings if f.severity is not Severity.info] == [], findings
    with open_source(debian_image) as source:
        [part] = partitions(source)
        assert (part.start, part.filesystem, part.bootable) == (1024 * 1024, "ext4", True)
        fs = Ext4(source, part.start)
        assert fs.read("/etc/machine-id") == b""
        assert not [n for n in fs.listdir("/etc/ssh") if n.startswith("ssh_host_")]
        assert fs.text("/etc/fstab").startswith(f"UUID={fs.uuid} / ext4")
        assert "console=ttyS0,115200n8" in fs.text("/boot/grub/grub.cfg")
        assert fs.exists("/usr/bin/growpart") and fs.exists("/usr/sbin/sshd")
    out = tmp_path / "debian.qcow2"
    result = debian.build(out)
    assert result.cached and out.read_bytes()[:4] == b"QFI\xfb"
    info = subprocess.run(["qemu-img", "check", "-f", "qcow2", str(out)],
                          capture_output=True, text=True)
    assert info.returncode == 0, info.stderr
    assert os.path.getsize(out) < 400 * 1024 * 1024
