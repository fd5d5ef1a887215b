"""The image reader against what e2fsprogs and qemu-img say about the same images."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kumo.imagebuild.reader import Ext4, ImageUnreadable, detect_format, open_source, partitions
from tests.imagebuild.lint.images import MIB, link, make_disk, write


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("tree")
    write(root, "/etc/hostname", "reader-test\n")
    write(root, "/data/big.bin", os.urandom(3 * MIB + 123))  # several extents/indirects
    write(root, "/data/sparse-ish.txt", b"a" * 5000)
    link(root, "/lib", "usr/lib")
    write(root, "/usr/lib/os-release", "ID=test\n")
    link(root, "/etc/os-release", "../usr/lib/os-release")
    link(root, "/abs", "/usr/lib/os-release")
    long_target = "/usr/lib/" + "d" * 70 + "/file"  # a slow symlink (> 60 bytes)
    write(root, long_target, "deep\n")
    link(root, "/long", long_target)
    link(root, "/loop", "/loop")
    for i in range(1500):  # an htree directory
        write(root, f"/many/file-{i:04d}", str(i))
    return root


def debugfs_cat(raw: Path, path: str) -> bytes:
    return subprocess.run(["debugfs", "-R", f"cat {path}", f"{raw}?offset={MIB}"],
                          capture_output=True, check=True).stdout


@pytest.mark.parametrize(("fs_type", "block_size"), [("ext4", None), ("ext3", 1024),
                                                      ("ext2", 1024)])
def test_files_read_like_debugfs(tmp_path: Path, tree: Path, fs_type: str,
                                 block_size: int | None) -> None:
    raw = make_disk(tree, tmp_path / "disk", fs_type=fs_type, block_size=block_size)
    with open_source(raw) as source:
        [part] = partitions(source)
        assert (part.number, part.start, part.kind, part.filesystem) == (1, MIB, "linux", fs_type)
        fs = Ext4(source, part.start)
        big = fs.read("/data/big.bin", limit=1 << 30)
        assert big == (tree / "data/big.bin").read_bytes() == debugfs_cat(raw, "/data/big.bin")
        assert fs.read("/data/sparse-ish.txt") == b"a" * 5000
        assert fs.read("/data/big.bin", limit=10) == big[:10]


@pytest.mark.parametrize("convert", [[], ["-c"], ["-c", "-o", "compression_type=zstd"]],
                         ids=["qcow2", "qcow2-zlib", "qcow2-zstd"])
def test_qcow2_reads_the_same_bytes_as_raw(tmp_path: Path, tree: Path,
                                           convert: list[str]) -> None:
    raw = make_disk(tree, tmp_path / "disk")
    qcow2 = tmp_path / "disk.qcow2"
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", *convert, str(raw),
                    str(qcow2)], check=True)
    assert detect_format(qcow2) == "qcow2" and detect_format(raw) == "raw"
    with open_source(qcow2) as source:
        assert source.size == raw.stat().st_size
        assert source.read(0, 2 * MIB) == raw.read_bytes()[: 2 * MIB]
        fs = Ext4(source, partitions(source)[0].start)
        assert fs.read("/data/big.bin", limit=1 << 30) == (tree / "data/big.bin").read_bytes()


def test_symlinks_and_directories(tmp_path: Path, tree: Path) -> None:
    with open_source(make_disk(tree, tmp_path / "disk")) as source:
        fs = Ext4(source, MIB)
        assert fs.text("/etc/os-release") == fs.text("/abs") == "ID=test\n"
        assert fs.text("/lib/os-release") == "ID=test\n"  # through a directory symlink
        assert fs.text("/long") == "deep\n"
        assert fs.readlink("/lib") == "usr/lib"
        assert fs.realpath("/lib/os-release") == "/usr/lib/os-release"
        assert fs.read("/nothing/here") is None and not fs.exists("/etc/nothing")
        assert len(fs.listdir("/many")) == 1500
        assert fs.text("/many/file-1234") == "1234"
        with pytest.raises(ImageUnreadable, match="symlinks"):
            fs.lookup("/loop")


def test_gpt_and_whole_disk_filesystems(tmp_path: Path, tree: Path) -> None:
    gpt = make_disk(tree, tmp_path / "gpt", label="gpt")
    with open_source(gpt) as source:
        [part] = partitions(source)
        assert (part.start, part.kind, part.filesystem) == (MIB, "linux", "ext4")
    bare = tmp_path / "bare.raw"
    subprocess.run(["mke2fs", "-q", "-F", "-t", "ext4", "-d", str(tree), str(bare), "16M"],
                   check=True)
    with open_source(bare) as source:
        [part] = partitions(source)
        assert (part.number, part.start, part.filesystem) == (0, 0, "ext4")
        assert Ext4(source, 0).text("/etc/hostname") == "reader-test\n"


def test_refuses_what_it_must_not_follow(tmp_path: Path, tree: Path) -> None:
    base = make_disk(tree, tmp_path / "base.qcow2", fmt="qcow2")
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2",
                    str(overlay)], check=True)
    with pytest.raises(ImageUnreadable, match="backing file"), open_source(overlay):
        pass
    vmdk = tmp_path / "disk.vmdk"
    subprocess.run(["qemu-img", "create", "-q", "-f", "vmdk", str(vmdk), "16M"], check=True)
    with pytest.raises(ImageUnreadable, match="vmdk"):
        detect_format(vmdk)
    with pytest.raises(ImageUnreadable, match="no such"), open_source(tmp_path / "missing"):
        pass


def test_empty_disk_has_no_partitions(tmp_path: Path) -> None:
    empty = tmp_path / "empty.raw"
    empty.write_bytes(bytes(MIB))
    with open_source(empty) as source:
        assert partitions(source) == []
