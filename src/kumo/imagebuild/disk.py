"""A bootable raw disk from a root tree, without loop devices, mounts or root tricks.

Layout (what OpenStack's image guide asks for, and what `kumo image lint` checks):
an MBR with one bootable Linux partition starting at 1 MiB that holds an ext4 root
filesystem, and GRUB in the MBR gap. The steps, all on a plain file:

1. `sfdisk` writes the partition table;
2. `mke2fs -d TREE -E offset=1MiB` makes the filesystem *and* fills it from TREE;
3. `grub-mkimage -O i386-pc` makes core.img, with an early config that finds the root
   by filesystem UUID; GRUB's boot.img (440 bytes) goes to sector 0 and core.img
   from sector 1, written here directly (what `dd` would do).

GRUB's modules and grub.cfg are put into TREE/boot/grub first, so the caller's tree
is changed: pass a scratch tree. The Debian image builder shares this module.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kumo.errors import BadRequest, InsufficientStorage, ToolError, ToolMissing
from kumo.process import run

MIB = 1024 * 1024
PARTITION_START = MIB  # sector 2048: the usual alignment, and room for core.img
SECTOR = 512
MBR_BOOT_CODE = 440  # bytes of boot.img that go before the disk signature/partitions
GRUB_DIR = Path("/usr/lib/grub/i386-pc")
GRUB_PACKAGE = "grub-pc-bin"
# Enough to read an ext4 partition on an MBR disk, find it by UUID, and boot Linux
# with its console on the first serial port; everything else loads from /boot/grub.
GRUB_CORE_MODULES = (
    "biosdisk", "part_msdos", "ext2", "search_fs_uuid", "normal", "linux", "echo",
    "test", "gzio", "serial", "terminal", "configfile",
)
# Space the filesystem needs beyond the files themselves (journal, inode tables,
# group descriptors): checked before mke2fs so the error says what to do.
FS_OVERHEAD_FRACTION = 0.15
FS_OVERHEAD_FIXED = 12 * MIB


@dataclass(frozen=True)
class BootEntry:
    """What GRUB boots: paths inside the root filesystem and the kernel's command line."""

    kernel: str = "/boot/vmlinuz"
    initrd: str | None = "/boot/initrd.img"
    cmdline: str = "console=tty0 console=ttyS0,115200n8"
    title: str = "Linux"
    # GRUB's 16-bit boot protocol (linux16/initrd16). Under software emulation the
    # kernel reaches start_kernel ~2 s sooner than after GRUB's 32-bit `linux` (measured
    # with the tiny image on this host); same kernel, same initrd.
    linux16: bool = False


def grub_config(entry: BootEntry, fs_uuid: str, *, timeout: int = 0) -> str:
    """grub.cfg text: console on serial and screen, no menu delay, one entry."""
    suffix = "16" if entry.linux16 else ""
    lines = [
        "# Written by kumo image build.",
        "serial --unit=0 --speed=115200 --word=8 --parity=no --stop=1",
        "terminal_input serial console",
        "terminal_output serial console",
        "set default=0",
        f"set timeout={timeout}",
        f"search --no-floppy --fs-uuid --set=root {fs_uuid}",
        f"menuentry '{entry.title}' {{",
        f"    linux{suffix} {entry.kernel} {entry.cmdline}",
    ]
    if entry.initrd:
        lines.append(f"    initrd{suffix} {entry.initrd}")
    lines += ["}", ""]
    return "\n".join(lines)


def new_fs_uuid() -> str:
    return str(uuid.uuid4())


def assemble_disk(
    root_tree: Path,
    out_raw: Path,
    *,
    size_bytes: int,
    entry: BootEntry,
    fs_uuid: str,
    fs_label: str = "root",
    grub_timeout: int = 0,
) -> None:
    """Write a bootable raw disk of `size_bytes` to `out_raw` from `root_tree`.

    Installs grub.cfg and GRUB's modules under `root_tree/boot/grub`. `out_raw` is
    written in place (callers write to a temporary name and rename). Raises
    BadRequest when the tree cannot fit, InsufficientStorage when the host disk fills,
    ToolMissing/ToolError for the programs used.
    """
    if size_bytes % MIB or size_bytes <= PARTITION_START + 16 * MIB:
        raise BadRequest(f"disk size must be a whole number of MiB above 17 MiB: {size_bytes}")
    with disk_full_is_clear(out_raw):
        install_grub_files(root_tree, entry, fs_uuid, timeout=grub_timeout)
        _check_fits(root_tree, size_bytes - PARTITION_START)
        with out_raw.open("wb") as disk:
            disk.truncate(size_bytes)
        _partition(out_raw)
        _make_filesystem(root_tree, out_raw, size_bytes - PARTITION_START, fs_uuid, fs_label)
        with tempfile.TemporaryDirectory(prefix="kumo-grub-", dir=out_raw.parent) as scratch:
            core = Path(scratch) / "core.img"
            _make_core_image(core, fs_uuid)
            write_boot_code(out_raw, GRUB_DIR / "boot.img", core)


def install_grub_files(root_tree: Path, entry: BootEntry, fs_uuid: str, *, timeout: int) -> None:
    """GRUB's i386-pc modules and a grub.cfg into `root_tree/boot/grub`."""
    if not (GRUB_DIR / "boot.img").is_file():
        raise ToolMissing(str(GRUB_DIR / "boot.img"), GRUB_PACKAGE)
    grub = root_tree / "boot" / "grub"
    modules = grub / "i386-pc"
    modules.mkdir(parents=True, exist_ok=True)
    for source in GRUB_DIR.iterdir():
        if source.suffix in (".mod", ".lst"):
            shutil.copyfile(source, modules / source.name)
    (grub / "grub.cfg").write_text(grub_config(entry, fs_uuid, timeout=timeout))


def write_boot_code(out_raw: Path, boot_img: Path, core_img: Path) -> None:
    """boot.img's code into the MBR (keeping the partition table), core.img after it."""
    boot = boot_img.read_bytes()
    core = core_img.read_bytes()
    if len(core) > PARTITION_START - SECTOR:
        raise ToolError("grub-mkimage", f"core.img is {len(core)} bytes: too big for the gap")
    with out_raw.open("r+b") as disk:
        disk.seek(0)
        disk.write(boot[:MBR_BOOT_CODE])
        disk.seek(SECTOR)
        disk.write(core)


def check_filesystem(raw: Path) -> None:
    """`e2fsck -fn` on the root partition: ToolError when it finds anything wrong."""
    run("e2fsck", ["-f", "-n", f"{raw}?offset={PARTITION_START}"], package="e2fsprogs")


def tree_size(root: Path) -> int:
    """Bytes the files under `root` take (apparent size, hard links counted once)."""
    total, seen = 0, set()
    for directory, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            info = os.lstat(os.path.join(directory, name))
            if (info.st_dev, info.st_ino) in seen:
                continue
            seen.add((info.st_dev, info.st_ino))
            total += info.st_size
    return total


def _check_fits(root_tree: Path, fs_bytes: int) -> None:
    needed = int(tree_size(root_tree) * (1 + FS_OVERHEAD_FRACTION)) + FS_OVERHEAD_FIXED
    if needed > fs_bytes:
        raise BadRequest(
            f"the root tree needs about {needed // MIB} MiB but the filesystem has "
            f"{fs_bytes // MIB} MiB; build a bigger disk"
        )


def _partition(out_raw: Path) -> None:
    disk_id = uuid.uuid4().hex[:8]
    table = (f"label: dos\nlabel-id: 0x{disk_id}\n"
             f"start={PARTITION_START // SECTOR}, type=83, bootable\n")
    run("sfdisk", ["--quiet", "--no-reread", "--no-tell-kernel", out_raw],
        package="fdisk", input=table.encode())


def _make_filesystem(root_tree: Path, out_raw: Path, fs_bytes: int, fs_uuid: str,
                     label: str) -> None:
    args: list[str | Path] = [
        "-F", "-q", "-t", "ext4", "-b", "4096", "-U", fs_uuid, "-L", label,
        "-d", root_tree, "-E", f"offset={PARTITION_START},root_owner=0:0",
        out_raw, f"{fs_bytes // 1024}k",
    ]
    try:
        run("mke2fs", args, package="e2fsprogs")
    except ToolError as exc:
        # A full *filesystem* (tree too big); a full host disk says "No space left".
        if "allocate" in exc.message:
            raise BadRequest(f"the root tree does not fit the disk: {exc.message}") from None
        raise


def _make_core_image(core: Path, fs_uuid: str) -> None:
    early = core.with_name("early.cfg")
    early.write_text(f"search.fs_uuid {fs_uuid} root\nset prefix=($root)/boot/grub\n")
    run("grub-mkimage", [
        "-O", "i386-pc", "-o", core, "-c", early, "-p", "/boot/grub",
        "-d", GRUB_DIR, *GRUB_CORE_MODULES,
    ], package=GRUB_PACKAGE)


@contextmanager
def disk_full_is_clear(out_raw: Path) -> Iterator[None]:
    """Turn 'no space left' (Python's or a tool's) while writing `out_raw` into
    InsufficientStorage naming the folder to free space in."""
    try:
        yield
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise InsufficientStorage(
                f"no space left on the device holding {out_raw.parent} while building "
                f"{out_raw.name}; free some space and build again"
            ) from None
        raise
    except ToolError as exc:
        if "No space left on device" in exc.message:
            raise InsufficientStorage(
                f"no space left on the device holding {out_raw.parent}: {exc.message}"
            ) from None
        raise
