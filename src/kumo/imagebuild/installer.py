"""`kumo image build installer`: a small installer CD (seed 000's flow, for tests).

A bootable ISO 9660 image made only of Debian packages: GRUB's El Torito core
(`grub-mkimage -O i386-pc-eltorito`, grub-pc-bin), the tiny image's Debian cloud
kernel, a busybox initramfs whose `/init` (files/installer/init) shows a prompt on
the VGA screen and waits for a key press, and the tiny image itself (gzip'd raw) as
the payload. After the key press the installer writes the payload to the first
virtio disk, reads it back against its md5, and powers off; the disk then holds a
system that boots on its own (kumo tiny). Upload it with `--disk-format iso`; a
server booted from it gets the CD plus a blank root disk of its flavor's size.
"""

from __future__ import annotations

import gzip
import hashlib
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from kumo.diskformat import qemuimg
from kumo.imagebuild import BuildResult, StepReporter, quiet, tiny
from kumo.imagebuild.cache import BuildCache, digest_tree, inputs_key
from kumo.imagebuild.debs import download, extract, installed_version
from kumo.imagebuild.disk import GRUB_DIR, GRUB_PACKAGE, disk_full_is_clear
from kumo.imagebuild.initramfs import NewcArchive, module_load_order
from kumo.process import require, run

INSTALLER_BUILD_VERSION = "3"
VOLUME_ID = "KUMO_INSTALLER"
# The disk to write, the CD to read the payload from (virtio-scsi: guests run on q35).
MODULES = ("virtio_pci", "virtio_blk", "virtio_scsi", "sr_mod", "isofs")
# /dev/console is the last console=: the VGA screen, where the installer talks.
# Not acpi=noirq: on q35 it leaves the kernel without the IO-APIC (see tiny.py).
KERNEL_CMDLINE = "console=ttyS0,115200n8 console=tty0 quiet cryptomgr.notests"
GRUB_ELTORITO_MODULES = ("biosdisk", "iso9660", "normal", "linux16", "echo", "test", "serial",
                         "terminal", "configfile")
TOOLS = {"grub-mkimage": GRUB_PACKAGE, "genisoimage": "genisoimage", "qemu-img": "qemu-utils"}
CHUNK = 1024 * 1024


def installer_image_properties() -> dict[str, str]:
    """Glance properties for the installer ISO."""
    return {"os_type": "linux", "architecture": "x86_64", "hw_firmware_type": "bios"}


def files_dir() -> Path:
    return Path(str(resources.files("kumo.imagebuild") / "files" / "installer"))


def build(out: Path, *, steps: StepReporter = quiet, rebuild: bool = False,
          cache: BuildCache | None = None) -> BuildResult:
    """Build (or take from the cache) the installer ISO and write it to `out`."""
    started = time.monotonic()
    image, cached, key = ensure_built(steps=steps, rebuild=rebuild, cache=cache)
    steps(f"writing {out}")
    out = out.absolute()
    partial = out.with_name(f".{out.name}.part")
    with disk_full_is_clear(out):
        shutil.copyfile(image, partial)
        partial.replace(out)
    return BuildResult(path=out, cached=cached, cache_key=key,
                       seconds=time.monotonic() - started, sizes={"iso": out.stat().st_size},
                       properties=installer_image_properties(), disk_format="iso")


def cached_image(cache: BuildCache | None = None) -> Path:
    """The installer ISO in the build cache (built first if needed). Read-only."""
    return ensure_built(cache=cache)[0]


def ensure_built(*, steps: StepReporter = quiet, rebuild: bool = False,
                 cache: BuildCache | None = None) -> tuple[Path, bool, str]:
    cache = cache or BuildCache()
    for program, package in TOOLS.items():
        require(program, package)
    steps("building the tiny image (the payload)")
    payload, _, tiny_key = tiny.ensure_built(cache=cache)
    packages = tiny.resolve_packages()
    inputs = {f"deb:{deb.name}": deb.version for deb in packages
              if deb.name == "busybox-static" or deb.name.startswith("linux-image-")}
    inputs.update({"build": INSTALLER_BUILD_VERSION, "files": digest_tree(files_dir()),
                   "payload:tiny": tiny_key,
                   "host:grub-pc-bin": installed_version("grub-pc-bin"),
                   "host:genisoimage": installed_version("genisoimage")})
    key = inputs_key(inputs)
    image, cached = cache.ensure(
        "installer", key, lambda: _build_into_cache(cache, key, inputs, payload, steps),
        steps=steps, rebuild=rebuild)
    return image, cached, key


def _build_into_cache(cache: BuildCache, key: str, inputs: dict[str, str], payload: Path,
                      steps: StepReporter) -> Path:
    packages = [deb for deb in tiny.resolve_packages()
                if deb.name == "busybox-static" or deb.name.startswith("linux-image-")]
    with cache.scratch("installer") as work, disk_full_is_clear(work / "installer.iso"):
        steps("unpacking busybox and the kernel")
        files = download(packages)
        unpacked = {deb.name: extract(files[deb.name], work / "debs" / deb.name)
                    for deb in packages}
        kernel_root = next(path for name, path in unpacked.items()
                           if name.startswith("linux-image-"))
        tree = work / "cd"
        (tree / "boot" / "grub").mkdir(parents=True)
        (tree / "install").mkdir()
        modules_dir = next((kernel_root / "lib" / "modules").iterdir())
        shutil.copyfile(kernel_root / "boot" / f"vmlinuz-{modules_dir.name}",
                        tree / "boot" / "vmlinuz")
        steps("writing the installer's initramfs")
        with (tree / "boot" / "installer.img").open("wb") as initrd:
            write_initramfs(initrd, unpacked["busybox-static"] / "bin" / "busybox",
                            module_load_order(modules_dir, MODULES))
        steps("packing the payload (kumo tiny, raw, gzip)")
        with cache.locked("tiny"):  # a concurrent tiny rebuild replaces the file
            write_payload(payload, work / "tiny.raw", tree / "install")
        steps("making the CD (GRUB El Torito, ISO 9660)")
        grub = (files_dir() / "grub.cfg").read_text().replace("@CMDLINE@", KERNEL_CMDLINE)
        (tree / "boot" / "grub" / "grub.cfg").write_text(grub)
        eltorito = tree / "boot" / "grub" / "eltorito.img"
        run("grub-mkimage", ["-O", "i386-pc-eltorito", "-o", eltorito, "-p", "/boot/grub",
                             "-d", GRUB_DIR, *GRUB_ELTORITO_MODULES], package=GRUB_PACKAGE)
        iso = work / "installer.iso"
        run("genisoimage", ["-quiet", "-R", "-J", "-V", VOLUME_ID, "-o", iso,
                            "-b", "boot/grub/eltorito.img", "-no-emul-boot",
                            "-boot-load-size", "4", "-boot-info-table", tree],
            package="genisoimage")
        return cache.store("installer", key, iso, inputs)


def write_initramfs(out: BinaryIO, busybox: Path, modules: list[Path]) -> None:
    """busybox, the installer's /init, the modules in load order."""
    archive = NewcArchive(out)
    for folder in ("bin", "dev", "proc", "sys", "etc", "cdrom", "lib", "lib/modules",
                   "lib/modules/installer"):
        archive.add(folder, 0o40755, b"")
    archive.add_device("dev/console", 0o20600, 5, 1)
    archive.add("init", 0o100755, (files_dir() / "init").read_bytes())
    archive.add("bin/busybox", 0o100755, busybox.read_bytes())
    archive.add("etc/installer-version", 0o100644, f"{INSTALLER_BUILD_VERSION}\n".encode())
    order = []
    for module in modules:
        name = module.name[:-3].replace("-", "_")
        archive.add(f"lib/modules/installer/{name}.ko", 0o100644, module.read_bytes())
        order.append(name)
    archive.add("lib/modules/installer/load-order", 0o100644, ("\n".join(order) + "\n").encode())
    archive.close()


def write_payload(qcow2: Path, scratch_raw: Path, dest: Path) -> None:
    """`tiny.img.gz` with its raw size and md5 beside it (the installer checks the disk)."""
    qemuimg.convert(qcow2, "qcow2", scratch_raw, "raw")
    md5 = hashlib.md5(usedforsecurity=False)
    with scratch_raw.open("rb") as raw, gzip.open(dest / "tiny.img.gz", "wb",
                                                  compresslevel=1) as packed:
        while chunk := raw.read(CHUNK):
            md5.update(chunk)
            packed.write(chunk)
    (dest / "tiny.img.md5").write_text(md5.hexdigest() + "\n")
    (dest / "tiny.img.size").write_text(f"{scratch_raw.stat().st_size}\n")
    scratch_raw.unlink()
