"""The stream inspector on real images built with qemu-img, and crafted bad ones."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from kumo.diskformat.inspect import ImageFormatRefused, StreamInspector, inspect_file_blocks


def qemu_img(*args: str | Path) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


def blocks(path: Path, size: int = 65536) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def test_qcow2_is_accepted_with_its_virtual_size(tmp_path: Path) -> None:
    path = tmp_path / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", path, "64M")
    verdict = inspect_file_blocks(blocks(path), "qcow2")
    assert verdict.detected == "qcow2"
    assert verdict.virtual_size == 64 * 1024 * 1024


def test_raw_is_accepted_and_sized_by_its_length(tmp_path: Path) -> None:
    path = tmp_path / "disk.raw"
    path.write_bytes(b"\x01" * 1_000_000)
    assert inspect_file_blocks(blocks(path), "raw").virtual_size == 1_000_000


def test_qcow2_claimed_as_raw_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", path, "16M")
    with pytest.raises(ImageFormatRefused, match="qcow2"):
        inspect_file_blocks(blocks(path), "raw")


def test_raw_claimed_as_qcow2_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "disk.raw"
    path.write_bytes(b"\x00" * 1_048_576)
    with pytest.raises(ImageFormatRefused):
        inspect_file_blocks(blocks(path), "qcow2")


def test_qcow2_with_backing_file_is_refused(tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", base, "16M")
    overlay = tmp_path / "overlay.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", overlay)
    with pytest.raises(ImageFormatRefused, match="backing"):
        inspect_file_blocks(blocks(overlay), "qcow2")


def test_qcow2_with_external_data_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "data.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-o", f"data_file={tmp_path / 'x.raw'}", path, "16M")
    with pytest.raises(ImageFormatRefused, match=r"data_file|data-file|safety"):
        inspect_file_blocks(blocks(path), "qcow2")


def test_vmdk_monolithic_flat_descriptor_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "flat.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicFlat", path, "16M")
    with pytest.raises(ImageFormatRefused):
        inspect_file_blocks(blocks(path), "vmdk")


def test_vmdk_monolithic_sparse_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "sparse.vmdk"
    qemu_img("create", "-q", "-f", "vmdk", "-o", "subformat=monolithicSparse", path, "16M")
    assert inspect_file_blocks(blocks(path), "vmdk").virtual_size == 16 * 1024 * 1024


def polyglot(tmp_path: Path) -> Path:
    """An ISO 9660 image whose first bytes (the unused system area) are a qcow2 header."""
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "hello.txt").write_text("hello\n")
    iso = tmp_path / "poly.iso"
    subprocess.run(
        ["genisoimage", "-quiet", "-o", str(iso), "-V", "POLY", str(tree)],
        check=True,
        capture_output=True,
    )
    header = tmp_path / "h.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", header, "16M")
    data = bytearray(iso.read_bytes())
    head = header.read_bytes()[:4096]
    data[: len(head)] = head
    iso.write_bytes(bytes(data))
    return iso


def test_polyglot_iso_and_qcow2_is_refused(tmp_path: Path) -> None:
    iso = polyglot(tmp_path)
    for claimed in ("iso", "qcow2"):
        with pytest.raises(ImageFormatRefused):
            inspect_file_blocks(blocks(iso), claimed)


def test_plain_iso_is_accepted(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.txt").write_text("a\n")
    iso = tmp_path / "plain.iso"
    subprocess.run(
        ["genisoimage", "-quiet", "-o", str(iso), str(tree)], check=True, capture_output=True
    )
    assert inspect_file_blocks(blocks(iso), "iso").detected == "iso"


def test_a_mismatch_is_found_before_the_stream_ends(tmp_path: Path) -> None:
    """The upload can stop early: the expected inspector fails on the first blocks."""
    path = tmp_path / "disk.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", path, "16M")
    inspector = StreamInspector("vmdk")
    fed = 0
    with pytest.raises(ImageFormatRefused):
        for chunk in blocks(path, 512):
            fed += len(chunk)
            inspector.feed(chunk)
    assert fed < path.stat().st_size
