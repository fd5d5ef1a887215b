"""One small image per disk format kumo accepts, made by qemu-img (and genisoimage)."""

from __future__ import annotations

import subprocess
from pathlib import Path

# Glance disk_format -> how qemu-img writes it (`ami` is a whole raw disk)
QEMU_FORMATS = {"qcow2": "qcow2", "raw": "raw", "ami": "raw", "vhd": "vpc", "vhdx": "vhdx",
                "vmdk": "vmdk", "vdi": "vdi", "ploop": "parallels"}


def small_image(folder: Path, disk_format: str, size: str = "16M") -> Path:
    """A blank disk of `size` in `disk_format` (an ISO with one file for `iso`)."""
    path = folder / f"small.{disk_format}"
    if disk_format == "iso":
        content = folder / "iso-content"
        content.mkdir(exist_ok=True)
        (content / "hello.txt").write_text("hello\n")
        subprocess.run(["genisoimage", "-quiet", "-o", str(path), "-V", "small", "-J", "-r",
                        str(content)], check=True)
        return path
    subprocess.run(["qemu-img", "create", "-q", "-f", QEMU_FORMATS[disk_format], str(path), size],
                   check=True)
    return path


def converted(source: Path, folder: Path, disk_format: str) -> Path:
    """`source` (a qcow2) written in `disk_format`."""
    path = folder / f"{source.stem}.{disk_format}"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", QEMU_FORMATS[disk_format],
                    str(source), str(path)], check=True)
    return path
