"""kumo's tiny guest (like CirrOS), built only from Debian packages.

A Debian cloud kernel, busybox, dropbear and ping on a 64 MiB disk: MBR, one ext4
partition, GRUB with its console on ttyS0. A small initramfs (busybox-static) loads
the virtio, CD-ROM/ISO 9660 and ACPI button drivers and mounts the root partition;
busybox init then brings eth0 up by DHCP (address, MTU, classless routes, DNS, host
name), reads the instance's key, hostname and user data from a `config-2` config
drive or http://169.254.169.254, starts dropbear for the user `tiny` (passwordless
sudo) and runs user data that starts with `#!`. Every step is printed to ttyS0 as a
`tiny: ...` line. The scripts live in `files/tiny/`.

The root's busybox is Debian's dynamically linked `busybox` on the glibc that
dropbear needs anyway: host names resolve through glibc's own NSS and
/etc/nsswitch.conf, and its shell finds programs on $PATH (busybox-static's runs its
applets first, whatever $PATH says). busybox-static stays for the initramfs, the boot
scripts (fast under software emulation) and sudo (Debian's dynamic build has no
`su`). `ping` is inetutils-ping without its setuid bit: the boot opens ICMP echo
sockets to every group (ping_group_range).
"""

from __future__ import annotations

import os
import shutil
import time
from importlib import resources
from pathlib import Path
from typing import BinaryIO

from kumo.diskformat import qemuimg
from kumo.imagebuild import COMMON_PROPERTIES, BuildResult, StepReporter, quiet
from kumo.imagebuild.cache import BuildCache, digest_tree, inputs_key
from kumo.imagebuild.debs import (
    Deb,
    PackageUnavailable,
    candidate,
    candidates,
    download,
    extract,
    installed_version,
)
from kumo.imagebuild.disk import (
    MIB,
    BootEntry,
    assemble_disk,
    check_filesystem,
    disk_full_is_clear,
    new_fs_uuid,
)
from kumo.imagebuild.initramfs import NewcArchive, library_closure, module_load_order
from kumo.process import require, run

# Bump when the build (this module, not files/tiny, which is digested) changes output.
TINY_BUILD_VERSION = "3"
TINY_ADMIN_USER = "tiny"
TINY_DISK_SIZE = 64 * MIB
KERNEL_PACKAGE = "linux-image-cloud-amd64"
PACKAGES = (
    "busybox", "busybox-static", "dropbear-bin", "inetutils-ping", "netbase",
    # the shared libraries of busybox, dropbear and ping
    "libc6", "libcrypt1", "libtomcrypt1", "libtommath1", "libgmp10", "zlib1g",
)
# Drivers Debian builds as modules that a cloud guest needs: virtio disk/net/rng/scsi,
# a config drive on an IDE/SCSI CD-ROM (ISO 9660), the ACPI power button (+ evdev).
MODULES = (
    "virtio_pci", "virtio_blk", "virtio_net", "virtio_scsi", "virtio_rng",
    "ata_piix", "sr_mod", "isofs", "button", "evdev",
)
# Boot-time options, each measured under software emulation (TCG, 1 vCPU):
# - cryptomgr.notests: skip the crypto self-tests of the built-in algorithms (~0.25 s
#   of boot). They check the kernel's own implementations, not any data; Debian ships
#   the same code tested. (FIPS mode ignores this option.)
# Not acpi=noirq (it saved ~0.4 s on the old `pc` machine): on q35, where kumo runs
# guests so that volumes can be hot-plugged onto PCIe root ports, it also skips the
# IO-APIC, so the kernel stays on the 8259 PIC without MSI and a hot-plugged virtio
# disk's INTx collides with ttyS0 ("genirq: Flags mismatch irq 4"): no disk appears.
KERNEL_CMDLINE = "rw console=tty0 console=ttyS0,115200n8 quiet cryptomgr.notests"
SUDO_GID = 27
STATIC_BUSYBOX = "usr/lib/tiny/static/busybox"  # the boot scripts' shell, sudo's su
ADMIN_UID = 1000
TOOLS = {  # program -> Debian package, checked before anything is downloaded
    "apt-get": "apt", "apt-cache": "apt", "dpkg-deb": "dpkg", "sfdisk": "fdisk",
    "mke2fs": "e2fsprogs", "e2fsck": "e2fsprogs", "grub-mkimage": "grub-pc-bin",
    "qemu-img": "qemu-utils",
}


def tiny_image_properties() -> dict[str, str]:
    """Glance properties to set when uploading the tiny image."""
    return {**COMMON_PROPERTIES, "os_admin_user": TINY_ADMIN_USER}


def files_dir() -> Path:
    return Path(str(resources.files("kumo.imagebuild") / "files" / "tiny"))


def resolve_packages() -> list[Deb]:
    """The packages (at the versions apt picks now) the tiny image is made of."""
    found = candidates([*PACKAGES, KERNEL_PACKAGE])
    kernel = next((name for name in found[KERNEL_PACKAGE].depends
                   if name.startswith("linux-image-")), None)
    if kernel is None:
        raise PackageUnavailable(KERNEL_PACKAGE, "it depends on no linux-image-* package")
    return [found[name] for name in PACKAGES] + [candidate(kernel)]


def build_inputs(packages: list[Deb]) -> dict[str, str]:
    inputs = {f"deb:{deb.name}": deb.version for deb in packages}
    inputs["build"] = TINY_BUILD_VERSION
    inputs["cmdline"] = KERNEL_CMDLINE
    inputs["files"] = digest_tree(files_dir())
    inputs["host:grub-pc-bin"] = installed_version("grub-pc-bin")
    return inputs


def build(out: Path, *, steps: StepReporter = quiet, rebuild: bool = False,
          cache: BuildCache | None = None) -> BuildResult:
    """Build (or take from the cache) the tiny image and write it to `out` as qcow2."""
    started = time.monotonic()
    image, cached, key = ensure_built(steps=steps, rebuild=rebuild, cache=cache)
    steps(f"writing {out}")
    _deliver(image, out)
    return BuildResult(
        path=out, cached=cached, cache_key=key, seconds=time.monotonic() - started,
        sizes={"qcow2": out.stat().st_size}, properties=tiny_image_properties(),
    )


def cached_image(cache: BuildCache | None = None) -> Path:
    """The tiny image's qcow2 in the build cache (built first if needed). Read-only."""
    return ensure_built(cache=cache)[0]


def ensure_built(*, steps: StepReporter = quiet, rebuild: bool = False,
                 cache: BuildCache | None = None) -> tuple[Path, bool, str]:
    """(cached qcow2, whether it was there already, inputs key)."""
    cache = cache or BuildCache()
    for program, package in TOOLS.items():
        require(program, package)
    steps("resolving package versions")
    packages = resolve_packages()
    inputs = build_inputs(packages)
    key = inputs_key(inputs)
    image, cached = cache.ensure(
        "tiny", key, lambda: _build_into_cache(cache, key, inputs, packages, steps),
        steps=steps, rebuild=rebuild,
    )
    return image, cached, key


def _build_into_cache(cache: BuildCache, key: str, inputs: dict[str, str],
                      packages: list[Deb], steps: StepReporter) -> Path:
    with cache.scratch("tiny") as work, disk_full_is_clear(work / "tiny.raw"):
        steps("downloading packages")
        files = download(packages)
        steps("unpacking packages")
        unpacked = {deb.name: extract(files[deb.name], work / "debs" / deb.name)
                    for deb in packages}
        steps("assembling the root tree and initramfs")
        kernel_deb = packages[-1]
        root = work / "root"
        kernel, initrd = assemble_tree(root, unpacked, kernel_deb.name)
        steps("writing the disk (MBR, ext4, GRUB)")
        raw = work / "tiny.raw"
        fs_uuid = new_fs_uuid()
        entry = BootEntry(kernel=kernel, initrd=initrd, title="kumo tiny",
                          cmdline=f"root=UUID={fs_uuid} {KERNEL_CMDLINE}", linux16=True)
        assemble_disk(root, raw, size_bytes=TINY_DISK_SIZE, entry=entry, fs_uuid=fs_uuid)
        check_filesystem(raw)
        steps("converting to qcow2")
        qcow2 = work / "tiny.qcow2"
        qemuimg.convert(raw, "raw", qcow2, "qcow2", compress=True,
                        options={"compression_type": "zstd"})
        return cache.store("tiny", key, qcow2, inputs)


def _deliver(image: Path, out: Path) -> None:
    out = out.absolute()
    partial = out.with_name(f".{out.name}.part")
    with disk_full_is_clear(out):
        shutil.copyfile(image, partial)
        os.replace(partial, out)


def assemble_tree(root: Path, unpacked: dict[str, Path], kernel_package: str) -> tuple[str, str]:
    """Fill `root` with the tiny userland, kernel and initramfs; returns their /boot paths."""
    for folder in ("bin", "sbin", "usr/bin", "usr/sbin", "lib", "etc", "dev", "proc", "sys",
                   "run", "tmp", "mnt", "root", "boot", "var/log", "var/lib/tiny", "home"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    (root / "tmp").chmod(0o1777)
    (root / "root").chmod(0o700)
    roots = list(unpacked.values())
    static_busybox = unpacked["busybox-static"] / "bin" / "busybox"
    _install_programs(root, unpacked["busybox"], ["bin/busybox"], roots)
    _link_applets(root, unpacked["busybox"] / "bin" / "busybox")
    _install_programs(root, unpacked["dropbear-bin"], ["usr/sbin/dropbear",
                                                       "usr/bin/dropbearkey"], roots)
    (root / "etc/dropbear").mkdir(parents=True, exist_ok=True)
    # Debian ships these setuid root; ICMP echo sockets (rcS) need no privilege.
    _install_programs(root, unpacked["inetutils-ping"], ["bin/ping", "bin/ping6"], roots)
    shutil.copytree(unpacked["netbase"] / "etc", root / "etc", dirs_exist_ok=True)
    _copy_files(root)
    _write_accounts(root)
    _write_etc(root)
    # busybox-static runs the boot scripts (their #! line) and sudo's `su`: setuid root,
    # group sudo only (see usr/bin/sudo). Its shell runs its applets without exec, and a
    # static exec costs ~1/3 of a dynamic one under TCG: the boot keeps its speed.
    static_copy = root / STATIC_BUSYBOX
    static_copy.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(static_busybox, static_copy)
    os.chown(static_copy, 0, SUDO_GID)
    static_copy.chmod(0o4750)

    kernel_root = unpacked[kernel_package]
    modules_dir = next((kernel_root / "lib" / "modules").iterdir())
    version = modules_dir.name
    shutil.copyfile(kernel_root / "boot" / f"vmlinuz-{version}", root / f"boot/vmlinuz-{version}")
    shutil.copyfile(kernel_root / "boot" / f"config-{version}", root / f"boot/config-{version}")
    with (root / f"boot/initrd.img-{version}").open("wb") as initrd:
        write_initramfs(initrd, static_busybox, module_load_order(modules_dir, MODULES))
    return f"/boot/vmlinuz-{version}", f"/boot/initrd.img-{version}"


def write_initramfs(out: BinaryIO, busybox: Path, modules: list[Path]) -> None:
    """The initramfs: busybox, /init from files/tiny, the modules in load order."""
    archive = NewcArchive(out)
    for folder in ("bin", "dev", "proc", "sys", "newroot", "lib", "lib/modules",
                   "lib/modules/tiny"):
        archive.add(folder, 0o40755, b"")
    archive.add_device("dev/console", 0o20600, 5, 1)
    archive.add("init", 0o100755, (files_dir() / "init").read_bytes())
    archive.add("bin/busybox", 0o100755, busybox.read_bytes())
    order = []
    for module in modules:
        name = module.name[:-3].replace("-", "_")
        archive.add(f"lib/modules/tiny/{name}.ko", 0o100644, module.read_bytes())
        order.append(name)
    archive.add("lib/modules/tiny/load-order", 0o100644, ("\n".join(order) + "\n").encode())
    archive.close()


def _install_programs(root: Path, package: Path, programs: list[str],
                      roots: list[Path]) -> None:
    """Copy `programs` (paths in the unpacked `package`) and the libraries they load."""
    for program in programs:
        target = root / program
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink():  # a busybox applet link the real program replaces
            target.unlink()
        shutil.copyfile(package / program, target)
        target.chmod(0o755)
        for guest_path, real in library_closure(package / program, roots).items():
            library = root / guest_path
            library.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(real, library)
            library.chmod(0o755)


def _copy_files(root: Path) -> None:
    """files/tiny (but the initramfs' /init) into the tree; they replace applet links.

    An applet link points at /bin/busybox, which here is the build host's: a file is
    never written through one.
    """
    for source in sorted(files_dir().rglob("*")):
        relative = source.relative_to(files_dir())
        target = root / relative
        if source.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        if str(relative) == "init":
            continue
        if target.is_symlink():
            target.unlink()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        # scripts keep their x bit however the package install left the source's mode
        target.chmod(0o755 if source.read_bytes()[:2] == b"#!" else 0o644)


def _link_applets(root: Path, busybox: Path) -> None:
    """A link to /bin/busybox for each applet where busybox puts it, unless a file is there.

    Applets that live in sbin get a second link in the matching bin: dropbear gives
    sessions of users other than root PATH=/usr/bin:/bin, and `ip`, `ifconfig` or
    `route` should work there as they did under busybox-static's applets-first shell.
    """
    listing = run(str(busybox), ["--list-full"], package="busybox").stdout.decode()
    for applet in listing.split():
        links = [applet]
        if applet.startswith(("sbin/", "usr/sbin/")):
            links.append(applet.replace("sbin/", "bin/", 1))
        for name in links:
            link = root / name
            if link.exists() or link.is_symlink():
                continue
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("/bin/busybox")


def _write_accounts(root: Path) -> None:
    etc = root / "etc"
    (etc / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\n"
        f"{TINY_ADMIN_USER}:x:{ADMIN_UID}:{ADMIN_UID}:kumo tiny:/home/{TINY_ADMIN_USER}:/bin/sh\n"
    )
    (etc / "group").write_text(
        f"root:x:0:\ntty:x:5:\nsudo:x:{SUDO_GID}:{TINY_ADMIN_USER}\n"
        f"{TINY_ADMIN_USER}:x:{ADMIN_UID}:\n"
    )
    # root has no password so that busybox su (via sudo, group sudo only) needs none;
    # there is no console login and dropbear refuses passwords and root (-s -w).
    (etc / "shadow").write_text(f"root::19000:0:::::\n{TINY_ADMIN_USER}:*:19000:0:99999:7:::\n")
    (etc / "shadow").chmod(0o600)
    (etc / "shells").write_text("/bin/sh\n/bin/ash\n")
    home = root / "home" / TINY_ADMIN_USER
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, ADMIN_UID, ADMIN_UID)


def _write_etc(root: Path) -> None:
    etc = root / "etc"
    (etc / "hostname").write_text("tiny\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n127.0.1.1 tiny\n")
    (etc / "nsswitch.conf").write_text(
        "passwd: files\ngroup: files\nshadow: files\nhosts: files dns\n"
        "networks: files\nprotocols: files\nservices: files\n"
    )
    (etc / "machine-id").write_text("")  # made at first boot of each instance
    (etc / "fstab").write_text("# / is mounted by the initramfs (root=UUID=... in grub.cfg)\n")
    (etc / "os-release").write_text(
        f'NAME="kumo tiny"\nID=kumo-tiny\nID_LIKE=debian\nVERSION_ID="{TINY_BUILD_VERSION}"\n'
        'PRETTY_NAME="kumo tiny (busybox + dropbear on a Debian kernel)"\n'
    )
    (etc / "profile").write_text(
        "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\nexport PS1='\\u@\\h:\\w\\$ '\n"
    )
    (etc / "motd").write_text("kumo tiny: busybox + dropbear. `sudo` works for tiny.\n")
