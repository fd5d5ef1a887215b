"""The installer CD's parts: its initramfs and its payload (the CD itself is booted in
tests/e2e/test_iso_install.py)."""

from __future__ import annotations

import gzip
import hashlib
import io
from pathlib import Path

from kumo.diskformat import qemuimg
from kumo.imagebuild.installer import KERNEL_CMDLINE, files_dir, write_initramfs, write_payload


def cpio_names(archive: bytes) -> dict[str, bytes]:
    """name -> data of a newc archive."""
    found, offset = {}, 0
    while True:
        header = archive[offset:offset + 110]
        size, name_size = int(header[54:62], 16), int(header[94:102], 16)
        name = archive[offset + 110:offset + 110 + name_size - 1].decode()
        offset += 110 + name_size
        offset += -offset % 4
        found[name] = archive[offset:offset + size]
        offset += size + (-size % 4)
        if name == "TRAILER!!!":
            return found


def test_initramfs_holds_the_installer_busybox_and_modules(tmp_path: Path) -> None:
    busybox = tmp_path / "busybox"
    busybox.write_bytes(b"\x7fELF busybox")
    modules = [tmp_path / "virtio_blk.ko", tmp_path / "sr_mod.ko"]
    for module in modules:
        module.write_bytes(b"module " + module.name.encode())
    out = io.BytesIO()
    write_initramfs(out, busybox, modules)
    files = cpio_names(gzip.decompress(out.getvalue()))
    assert files["init"] == (files_dir() / "init").read_bytes()
    assert files["init"].startswith(b"#!/bin/busybox sh")
    assert b"Press any key on this screen" in files["init"]
    assert files["bin/busybox"] == b"\x7fELF busybox"
    assert files["lib/modules/installer/load-order"] == b"virtio_blk\nsr_mod\n"
    assert "dev/console" in files


def test_payload_is_the_raw_disk_gzip_with_its_size_and_md5(tmp_path: Path) -> None:
    qcow2 = tmp_path / "tiny.qcow2"
    raw_source = tmp_path / "source.raw"
    raw_source.write_bytes(b"kumo tiny disk" * 1024 + bytes(1024 * 1024))  # 512-byte sectors
    qemuimg.convert(raw_source, "raw", qcow2, "qcow2")
    dest = tmp_path / "install"
    dest.mkdir()
    write_payload(qcow2, tmp_path / "scratch.raw", dest)
    raw = gzip.decompress((dest / "tiny.img.gz").read_bytes())
    assert raw == raw_source.read_bytes()
    assert (dest / "tiny.img.size").read_text().strip() == str(len(raw))
    assert (dest / "tiny.img.md5").read_text().strip() == hashlib.md5(raw).hexdigest()
    assert not (tmp_path / "scratch.raw").exists()


def test_grub_boots_the_installer_with_the_vga_screen_as_console() -> None:
    grub = (files_dir() / "grub.cfg").read_text()
    assert "linux16 /boot/vmlinuz @CMDLINE@" in grub
    assert KERNEL_CMDLINE.index("console=ttyS0") < KERNEL_CMDLINE.index("console=tty0")
