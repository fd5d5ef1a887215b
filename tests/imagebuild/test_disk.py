"""A bootable raw disk from a tree: partition table, filesystem, GRUB, clear errors."""

from __future__ import annotations

import errno
import json
import subprocess
from pathlib import Path

import pytest

from kumo.errors import BadRequest, InsufficientStorage, ToolMissing
from kumo.imagebuild import disk


def debugfs(raw: Path, request: str) -> str:
    return subprocess.run(
        ["debugfs", "-R", request, f"{raw}?offset={disk.PARTITION_START}"],
        capture_output=True, text=True, check=True,
    ).stdout


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "boot").mkdir(parents=True)
    (root / "boot" / "vmlinuz").write_bytes(b"not really a kernel")
    (root / "hello.txt").write_text("hello from the tree\n")
    return root


def test_disk_has_one_bootable_ext4_partition_at_1mib_and_grub(tree: Path, tmp_path: Path) -> None:
    raw, fs_uuid = tmp_path / "disk.raw", disk.new_fs_uuid()
    entry = disk.BootEntry(kernel="/boot/vmlinuz", initrd=None, cmdline="console=ttyS0 quiet")
    disk.assemble_disk(tree, raw, size_bytes=48 * disk.MIB, entry=entry, fs_uuid=fs_uuid)

    assert raw.stat().st_size == 48 * disk.MIB
    table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    assert table["label"] == "dos"
    [partition] = table["partitions"]
    assert partition["start"] == 2048 and partition["type"] == "83"
    assert partition.get("bootable") is True
    assert partition["start"] + partition["size"] == 48 * disk.MIB // 512

    mbr = raw.read_bytes()[:512]
    assert mbr[510:] == b"\x55\xaa"
    assert mbr[:440] == (disk.GRUB_DIR / "boot.img").read_bytes()[:440]
    assert raw.read_bytes()[512:1024] != b"\0" * 512  # core.img follows the MBR

    disk.check_filesystem(raw)
    assert f"Filesystem UUID:          {fs_uuid}" in debugfs(raw, "stats")
    assert debugfs(raw, "cat /hello.txt") == "hello from the tree\n"
    grub_cfg = debugfs(raw, "cat /boot/grub/grub.cfg")
    assert "set timeout=0" in grub_cfg
    assert "terminal_output serial console" in grub_cfg
    assert f"--set=root {fs_uuid}" in grub_cfg
    assert "linux /boot/vmlinuz console=ttyS0 quiet" in grub_cfg
    assert "normal.mod" in debugfs(raw, "ls -l /boot/grub/i386-pc")


def test_tree_too_big_for_the_disk_is_refused_before_writing(tree: Path, tmp_path: Path) -> None:
    (tree / "big").write_bytes(b"\1" * (40 * disk.MIB))
    raw = tmp_path / "disk.raw"
    with pytest.raises(BadRequest, match="bigger disk"):
        disk.assemble_disk(tree, raw, size_bytes=32 * disk.MIB, entry=disk.BootEntry(),
                           fs_uuid=disk.new_fs_uuid())
    assert not raw.exists()


def test_missing_tool_names_the_debian_package(tree: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = disk.run.__globals__["shutil"].which

    def which(program: str, *args: object, **kwargs: object) -> str | None:
        return None if program == "sfdisk" else real_which(program, *args, **kwargs)

    monkeypatch.setattr("kumo.process.shutil.which", which)
    with pytest.raises(ToolMissing, match="apt-get install fdisk"):
        disk.assemble_disk(tree, tmp_path / "disk.raw", size_bytes=32 * disk.MIB,
                           entry=disk.BootEntry(), fs_uuid=disk.new_fs_uuid())


def test_full_host_disk_is_reported_as_such(tmp_path: Path) -> None:
    with pytest.raises(InsufficientStorage, match="no space left"), \
            disk.disk_full_is_clear(tmp_path / "x.raw"):
        raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_size_must_be_whole_mib(tree: Path, tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="whole number of MiB"):
        disk.assemble_disk(tree, tmp_path / "d.raw", size_bytes=32 * disk.MIB + 1,
                           entry=disk.BootEntry(), fs_uuid=disk.new_fs_uuid())
