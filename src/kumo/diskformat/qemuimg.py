"""Every call of `qemu-img`, always with the input format pinned (`-f`).

Pinning the format matters: a guest can write a qcow2 header into a raw disk, and
an unpinned qemu-img would then follow a backing file of the guest's choosing
(CVE-2026-24708, CVE-2024-32498). Reading an image someone else made (`info`,
`check`) runs under nova's limits (1 GiB of address space, 30 s of CPU, set with
prlimit), so a crafted header cannot make qemu-img eat the host (OSSA-2015-014).

Functions take Glance's disk_format names or QEMU's: `driver()` maps the ones
that differ (vhd is QEMU's `vpc`, ploop its `parallels`, iso and ami are raw).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kumo.errors import BadRequest, ToolError
from kumo.process import require, run

PACKAGE = "qemu-utils"
# Glance disk_format -> the QEMU block driver that reads it (others are the same name).
QEMU_DRIVERS = {"vhd": "vpc", "ploop": "parallels", "iso": "raw", "ami": "raw"}
# nova.virt.images.QEMU_IMG_LIMITS
INSPECT_ADDRESS_SPACE = 1024**3
INSPECT_CPU_SECONDS = 30
# qemu-img check's exit status: 2 corruptions, 3 only leaked clusters (harmless),
# 63 the format has no check.
CHECK_CORRUPT, CHECK_LEAKS, CHECK_UNSUPPORTED = 2, 3, 63


def driver(fmt: str) -> str:
    """QEMU's name for a Glance disk_format (`vhd` -> `vpc`); QEMU names pass through."""
    return QEMU_DRIVERS.get(fmt, fmt)


def _inspect(args: list[str | Path], *, ok: tuple[int, ...] = (0,)) -> tuple[int, bytes]:
    """qemu-img reading an untrusted image, under nova's memory and CPU limits."""
    qemu_img = require("qemu-img", PACKAGE)
    limits = [f"--as={INSPECT_ADDRESS_SPACE}", f"--cpu={INSPECT_CPU_SECONDS}"]
    try:
        result = run("prlimit", [*limits, "--", qemu_img, *args], package="util-linux",
                     timeout=INSPECT_CPU_SECONDS * 2, ok_codes=ok)
    except ToolError as exc:
        # prlimit execs qemu-img: the failure and its stderr are qemu-img's.
        raise ToolError("qemu-img", exc.message.removeprefix("prlimit: ")) from None
    return result.returncode, result.stdout


@dataclass(frozen=True)
class ImageInfo:
    format: str
    virtual_size: int
    actual_size: int
    backing_file: str | None
    data_file: str | None
    raw: dict[str, Any]


def info(path: Path, fmt: str) -> ImageInfo:
    """`qemu-img info` of `path` read as `fmt` (never guessed), under nova's limits."""
    _, stdout = _inspect(["info", "-f", driver(fmt), "--output=json", "--force-share", path])
    data = json.loads(stdout)
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


def check_upload(path: Path, fmt: str) -> ImageInfo:
    """Refuse (BadRequest, with the reason) an image kumo could not safely boot.

    After the stream inspector's verdict, as Glance's import and nova's fetch do:
    qemu-img must open the file as exactly `fmt` under the limits (an absurd L1
    table, refcount order, cluster size, header length or snapshot count makes
    it fail), it must point at no other file and not be encrypted, and
    `qemu-img check` must find no corruption where the format has a check.
    """
    try:
        found = info(path, fmt)
    except ToolError as exc:
        raise BadRequest(f"Image data refused: qemu-img cannot read it as {fmt}: "
                         f"{_reason(exc.message)}") from None
    except ValueError:  # the JSON could not be read: treat like a failure to open
        raise BadRequest(f"Image data refused: qemu-img cannot read it as {fmt}") from None
    if found.format != driver(fmt):
        raise BadRequest(f"Image data refused: qemu-img reads it as {found.format}, not {fmt}")
    if found.backing_file:
        raise BadRequest(f"Image data refused: it has a backing file ({found.backing_file})")
    if found.data_file:
        raise BadRequest(f"Image data refused: it has an external data file ({found.data_file})")
    if found.raw.get("encrypted") or found.raw.get("format-specific", {}).get(
            "data", {}).get("encrypt"):
        raise BadRequest("Image data refused: it is encrypted, and kumo boots no encrypted disk")
    try:
        code, stdout = _inspect(
            ["check", "-f", driver(fmt), "--output=json", "--force-share", path],
            ok=(0, CHECK_CORRUPT, CHECK_LEAKS, CHECK_UNSUPPORTED))
    except ToolError as exc:
        raise BadRequest(f"Image data refused: qemu-img check failed: "
                         f"{_reason(exc.message)}") from None
    if code == CHECK_CORRUPT:
        errors = _check_errors(stdout)
        raise BadRequest(f"Image data refused: qemu-img check found {errors} corruption(s)")
    return found


def _check_errors(stdout: bytes) -> str:
    try:
        return str(json.loads(stdout).get("corruptions", "some"))
    except ValueError:
        return "some"


def _reason(message: str) -> str:
    """qemu-img's own words: no exit status, program name or server-side path."""
    text = message.removeprefix("qemu-img: ")
    if text.startswith("exited with status"):
        text = text.split(": ", 1)[-1]
    text = text.removeprefix("qemu-img: ")
    if text.startswith("Could not open '") and "': " in text:
        text = text.split("': ", 1)[1]
    return text


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
    args: list[str | Path] = ["convert", "-f", driver(source_format), "-O", driver(dest_format)]
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
        "create", "-q", "-f", "qcow2", "-b", base, "-F", driver(base_format), overlay,
    ]
    if size is not None:
        args.append(str(size))
    run("qemu-img", args, package=PACKAGE, timeout=60)


def rebase_in_place(overlay: Path, base: Path, base_format: str) -> None:
    """Point a qcow2 overlay at another copy of the same base (`rebase -u`: no data moves).

    For a disk moved to another host, whose `_base` cache holds the same image elsewhere.
    """
    run("qemu-img", ["rebase", "-q", "-u", "-f", "qcow2", "-b", base, "-F", base_format,
                     overlay], package=PACKAGE, timeout=60)


def create(path: Path, fmt: str, size: int, options: dict[str, str] | None = None) -> None:
    args: list[str | Path] = ["create", "-q", "-f", driver(fmt)]
    if options:
        args += ["-o", ",".join(f"{k}={v}" for k, v in options.items())]
    args += [path, str(size)]
    run("qemu-img", args, package=PACKAGE, timeout=60)


def resize(path: Path, fmt: str, size: int) -> None:
    run("qemu-img", ["resize", "-q", "-f", driver(fmt), path, str(size)], package=PACKAGE,
        timeout=60)
