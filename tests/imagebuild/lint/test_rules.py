"""Every rule: a good image has no findings; breaking one requirement fires exactly its rule."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from kumo.imagebuild.lint import RULES, Severity, has_errors, lint_image
from tests.imagebuild.lint.images import (
    GRUB_CFG,
    KERNEL_VERSION,
    good_tree,
    initrd,
    link,
    make_disk,
    write,
)

Breaker = Callable[[Path], None]


def _no_datasource(root: Path) -> None:
    write(root, "/etc/cloud/cloud.cfg.d/90_dpkg.cfg", "datasource_list: [ NoCloud, None ]\n")


def _no_cloud_init(root: Path) -> None:
    (root / "usr/bin/cloud-init").unlink()


def _no_growpart(root: Path) -> None:
    (root / "usr/bin/growpart").unlink()


def _persistent_rules(root: Path) -> None:
    write(root, "/etc/udev/rules.d/70-persistent-net.rules",
          '# generated\nSUBSYSTEM=="net", ATTR{address}=="52:54:00:12:34:56", NAME="eth0"\n')


def _generator(root: Path) -> None:
    write(root, "/lib/udev/rules.d/75-persistent-net-generator.rules",
          'ACTION=="add", SUBSYSTEM=="net", IMPORT{program}="write_net_rules"\n')


def _hwaddr(root: Path) -> None:
    write(root, "/etc/sysconfig/network-scripts/ifcfg-eth0",
          "DEVICE=eth0\nBOOTPROTO=dhcp\nHWADDR=52:54:00:12:34:56\nONBOOT=yes\n")


def _ssh_disabled(root: Path) -> None:
    (root / "etc/systemd/system/multi-user.target.wants/ssh.service").unlink()


def _no_ssh(root: Path) -> None:
    (root / "usr/sbin/sshd").unlink()


def _firewalld(root: Path) -> None:
    link(root, "/etc/systemd/system/multi-user.target.wants/firewalld.service",
         "/usr/lib/systemd/system/firewalld.service")


def _ufw_on(root: Path) -> None:
    write(root, "/etc/ufw/ufw.conf", "# ufw\nENABLED=yes\nLOGLEVEL=low\n")


def _no_serial(root: Path) -> None:
    write(root, "/boot/grub/grub.cfg",
          GRUB_CFG.replace(" console=tty0 console=ttyS0,115200n8", " quiet"))


def _no_virtio(root: Path) -> None:
    write(root, f"/boot/initrd.img-{KERNEL_VERSION}", initrd(modules=("kernel/fs/ext4.ko",)))


BREAKERS: dict[str, list[tuple[Breaker, Severity]]] = {
    "cloud-init": [(_no_datasource, Severity.error), (_no_cloud_init, Severity.error)],
    "growpart": [(_no_growpart, Severity.warning)],
    "persistent-net-rules": [(_persistent_rules, Severity.error)],
    "persistent-net-generator": [(_generator, Severity.error)],
    "ifcfg-hwaddr": [(_hwaddr, Severity.error)],
    "ssh-server": [(_ssh_disabled, Severity.error), (_no_ssh, Severity.error)],
    "firewall": [(_firewalld, Severity.error), (_ufw_on, Severity.error)],
    "serial-console": [(_no_serial, Severity.error)],
    "virtio-drivers": [(_no_virtio, Severity.error)],
}
CASES = [pytest.param(rule, breaker, severity, id=f"{rule}-{breaker.__name__.strip('_')}")
         for rule, breakers in BREAKERS.items() for breaker, severity in breakers]


def test_every_rule_has_a_breaking_image() -> None:
    assert set(BREAKERS) | {"root-filesystem"} == set(RULES)


def test_good_image_has_no_findings(tmp_path: Path) -> None:
    disk = make_disk(good_tree(tmp_path / "root"), tmp_path / "good")
    assert lint_image(disk) == []


@pytest.mark.parametrize(("rule", "breaker", "severity"), CASES)
def test_breaking_one_requirement_fires_exactly_its_rule(
    tmp_path: Path, rule: str, breaker: Breaker, severity: Severity
) -> None:
    root = good_tree(tmp_path / "root")
    breaker(root)
    findings = lint_image(make_disk(root, tmp_path / "broken"))
    assert {f.rule for f in findings} == {rule}, findings
    assert max(findings, key=lambda f: f.severity != severity).severity is severity
    assert all(f.message and f.fix for f in findings)


def test_lvm_partition_fires_root_filesystem_only(tmp_path: Path) -> None:
    disk = tmp_path / "lvm.raw"
    with disk.open("wb") as f:
        f.truncate(8 * 1024 * 1024)
    subprocess.run(["sfdisk", "-q", str(disk)], input=b"start=2048, type=8e\n", check=True)
    with disk.open("r+b") as f:  # an LVM2 physical volume label in the partition's sector 1
        f.seek(1024 * 1024 + 512)
        f.write(b"LABELONE" + bytes(24) + b"LVM2 001")
    findings = lint_image(disk)
    assert {f.rule for f in findings} == {"root-filesystem"}
    assert {f.severity for f in findings} == {Severity.error, Severity.warning}
    assert any("LVM" in f.message for f in findings)
    assert has_errors(findings)


def test_ext2_root_is_a_warning(tmp_path: Path) -> None:
    disk = make_disk(good_tree(tmp_path / "root"), tmp_path / "ext2", fs_type="ext2")
    findings = lint_image(disk)
    assert [(f.rule, f.severity) for f in findings] == [("root-filesystem", Severity.warning)]


def test_metadata_script_instead_of_cloud_init_is_a_warning(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    _no_cloud_init(root)
    write(root, "/etc/rc.local", "#!/bin/sh\nwget -q -O /root/.ssh/authorized_keys "
          "http://169.254.169.254/latest/meta-data/public-keys/0/openssh-key\n", 0o755)
    findings = lint_image(make_disk(root, tmp_path / "script"))
    assert [(f.rule, f.severity) for f in findings] == [("cloud-init", Severity.warning)]
    assert "/etc/rc.local" in findings[0].message


def test_script_in_initramfs_counts(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    _no_cloud_init(root)
    write(root, f"/boot/initrd.img-{KERNEL_VERSION}", initrd(extra={
        "etc/init.d/rcS": b"#!/bin/sh\nwget http://169.254.169.254/latest/meta-data/\n"}))
    findings = lint_image(make_disk(root, tmp_path / "initrd"))
    assert [(f.rule, f.severity) for f in findings] == [("cloud-init", Severity.warning)]


def test_virtio_built_into_the_kernel_needs_no_initramfs(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    _no_virtio(root)
    write(root, f"/lib/modules/{KERNEL_VERSION}/modules.builtin",
          "kernel/drivers/block/virtio_blk.ko\nkernel/drivers/virtio/virtio_pci.ko\n"
          "kernel/drivers/net/virtio_net.ko\n")
    assert lint_image(make_disk(root, tmp_path / "builtin")) == []


def test_extlinux_without_serial_console(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    (root / "boot/grub/grub.cfg").unlink()
    write(root, "/boot/extlinux/extlinux.conf",
          f"DEFAULT linux\nLABEL linux\n  KERNEL /boot/vmlinuz-{KERNEL_VERSION}\n"
          f"  APPEND root=/dev/vda1 initrd=/boot/initrd.img-{KERNEL_VERSION}\n")
    findings = lint_image(make_disk(root, tmp_path / "extlinux"))
    assert {f.rule for f in findings} == {"serial-console"}


def test_qcow2_is_read_like_raw(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    _hwaddr(root)
    findings = lint_image(make_disk(root, tmp_path / "broken.qcow2", fmt="qcow2"))
    assert {f.rule for f in findings} == {"ifcfg-hwaddr"}
