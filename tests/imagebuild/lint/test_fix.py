"""`--fix`: a copy of a broken image comes out passing; the input is never changed."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest

from kumo.errors import BadRequest
from kumo.imagebuild.lint import lint_image
from kumo.imagebuild.lint.fix import fix_image
from kumo.imagebuild.reader import Ext4, open_source, partitions
from tests.imagebuild.lint import test_rules as broken
from tests.imagebuild.lint.images import good_tree, link, make_disk

FIXABLE = (broken._no_datasource, broken._persistent_rules, broken._generator, broken._hwaddr,
           broken._ssh_disabled, broken._firewalld, broken._ufw_on, broken._no_serial)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read(image: Path, path: str) -> bytes | None:
    with open_source(image) as source:
        return Ext4(source, partitions(source)[0].start).read(path)


@pytest.mark.parametrize("fmt", ["raw", "qcow2"])
def test_fix_turns_a_broken_image_into_a_passing_copy(tmp_path: Path, fmt: str) -> None:
    root = good_tree(tmp_path / "root")
    for breaker in FIXABLE:
        breaker(root)
    link(root, "/etc/systemd/system/nftables.service", "/dev/null")  # masked: not a finding
    image = make_disk(root, tmp_path / f"broken.{fmt}", fmt=fmt)
    before = sha256(image)
    rules_before = {f.rule for f in lint_image(image)}
    assert rules_before == {"cloud-init", "persistent-net-rules", "persistent-net-generator",
                            "ifcfg-hwaddr", "ssh-server", "firewall", "serial-console"}

    out = tmp_path / f"fixed.{fmt}"
    result = fix_image(image, out)

    assert sha256(image) == before  # the input is untouched
    assert lint_image(out) == [] and result.after == []
    assert {rule for rule, _ in result.applied} == rules_before
    assert subprocess.run(["qemu-img", "info", "-f", fmt, str(out)],
                          capture_output=True).returncode == 0
    # What a user would check: the files themselves.
    assert read(out, "/etc/udev/rules.d/70-persistent-net.rules") == b""
    ifcfg = read(out, "/etc/sysconfig/network-scripts/ifcfg-eth0") or b""
    assert b"HWADDR" not in ifcfg and b"BOOTPROTO=dhcp" in ifcfg
    assert b"console=ttyS0" in (read(out, "/boot/grub/grub.cfg") or b"")
    assert b"ENABLED=no" in (read(out, "/etc/ufw/ufw.conf") or b"")
    with open_source(out) as source:
        fs = Ext4(source, partitions(source)[0].start)
        assert fs.readlink("/etc/systemd/system/multi-user.target.wants/ssh.service")
        assert not fs.exists("/etc/systemd/system/multi-user.target.wants/firewalld.service",
                             follow=False)
        assert fs.lookup("/etc/sysconfig/network-scripts/ifcfg-eth0").mode & 0o777 == 0o644


def test_fix_of_a_clean_image_changes_nothing_that_lint_sees(tmp_path: Path) -> None:
    image = make_disk(good_tree(tmp_path / "root"), tmp_path / "good")
    result = fix_image(image, tmp_path / "out.raw")
    assert result.applied == [] and result.after == []


def test_fix_leaves_what_it_cannot_fix(tmp_path: Path) -> None:
    root = good_tree(tmp_path / "root")
    broken._no_ssh(root)
    broken._hwaddr(root)
    result = fix_image(make_disk(root, tmp_path / "in"), tmp_path / "out.raw")
    assert {f.rule for f in result.after} == {"ssh-server"}


def test_fix_refuses_to_overwrite_its_input(tmp_path: Path) -> None:
    image = make_disk(good_tree(tmp_path / "root"), tmp_path / "good")
    with pytest.raises(BadRequest, match="copy"):
        fix_image(image, image)
