"""Every call of `qemu-img`, always with the input format pinned (`-f`).

Pinning the format matters: a guest can write a qcow2 header into a raw disk, and
an unpinned qemu-img would then follow a backing file of the guest's choosing
(CVE-2026-24708, CVE-2024-32498).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kumo.errors import BadRequest
from kumo.process import run

PACKAGE = "qemu-utils"


@dataclass(frozen=True)
class ImageInfo:
    format: str
    virtual_size: int
    actual_size: int
    backing_file: str | None
    data_file: str | None
    raw: dict[str, Any]


def info(path: Path, fmt: str) -> ImageInfo:
    """`qemu-img info` of `path` read as `fmt` (never guessed)."""
    result = run(
        "qemu-img",
        ["info", "-f", fmt, "--output=json", "--force-share", path],
        package=PACKAGE,
        timeout=60,
    )
    data = json.loads(result.stdout)
    specific = data.get("format-specific", {}).get("data", {})
    return ImageInfo(
        format=data["format"],
        virtual_size=int(data["virtual-size"]),
        actual_size=int(data.get("actual-size", 0)),
        backing_file=data.get("backing-filename") or data.get("full-backing-filename"),
        data_file=specific.get("data-file"),
        raw=data,
    )


def check_safe(path: Path, fmt: str) -> ImageInfo:
    """info(), refusing an image that points at other files (backing or data file)."""
    found = info(path, fmt)
    if found.backing_file:
        raise BadRequest(f"{path.name}: has a backing file ({found.backing_file}); refused")
    if found.data_file:
        raise BadRequest(f"{path.name}: has an external data file ({found.data_file}); refused")
    return found


def convert(
    source: Path,
    source_format: str,
    dest: Path,
    dest_format: str,
    *,
    compress: bool = False,
    options: dict[str, str] | None = None,
    progress: bool = False,
    force_share: bool = False,
) -> None:
    """`qemu-img convert -f SRC_FMT -O DEST_FMT`; write to `dest` (caller renames).

    `force_share` (-U) reads a disk a paused QEMU still holds open (snapshots).
    """
    args: list[str | Path] = ["convert", "-f", source_format, "-O", dest_format]
    if force_share:
        args.append("-U")
    if compress:
        args.append("-c")
    if options:
        args += ["-o", ",".join(f"{k}={v}" for k, v in options.items())]
    args += [source, dest]
    run("qemu-img", args, package=PACKAGE, timeout=3600)


def create_overlay(base: Path, base_format: str, overlay: Path, size: int | None = None) -> None:
    """A qcow2 overlay on `base` (backing format pinned), optionally of `size` bytes."""
    args: list[str | Path] = [
        "create", "-q", "-f", "qcow2", "-b", base, "-F", base_format, overlay,
    ]
    if size is not None:
        args.append(str(size))
    run("qemu-img", args, package=PACKAGE, timeout=60)


def create(path: Path, fmt: str, size: int, options: dict[str, str] | None = None) -> None:
    args: list[str | Path] = ["create", "-q", "-f", fmt]
    if options:
        args += ["-o", ",".join(f"{k}={v}" for k, v in options.items())]
    args += [path, str(size)]
    run("qemu-img", args, package=PACKAGE, timeout=60)


def resize(path: Path, fmt: str, size: int) -> None:
    run("qemu-img", ["resize", "-q", "-f", fmt, path, str(size)], package=PACKAGE, timeout=60)
