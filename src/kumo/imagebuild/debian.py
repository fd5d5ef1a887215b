"""A Debian 12 cloud image from packages: cloud-init, growpart, openssh, serial console.

The root tree comes from `mmdebstrap` (about 45 s here); kumo then makes it a cloud
image the way OpenStack's image guide asks (see `kumo image lint`): cloud-init with
the NoCloud, ConfigDrive, OpenStack and Ec2 datasources, growpart, an SSH server
without host keys (cloud-init makes them per instance), an empty machine-id, fstab
by UUID, no persistent net rules, no firewall, and the kernel's console on ttyS0.
`disk.assemble_disk` writes the MBR + ext4 + GRUB disk without loop devices or
mounts. Builds are cached by their inputs under ~/.cache/kumo/images.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from kumo.diskformat import qemuimg
from kumo.errors import BadRequest, ToolError
from kumo.imagebuild import COMMON_PROPERTIES, BuildResult, StepReporter, quiet
from kumo.imagebuild.cache import BuildCache, inputs_key
from kumo.imagebuild.debs import candidates, installed_version, real_package
from kumo.imagebuild.disk import (
    MIB,
    BootEntry,
    assemble_disk,
    check_filesystem,
    disk_full_is_clear,
    new_fs_uuid,
)
from kumo.process import require, run

# Bump when this module changes what the image contains.
DEBIAN_BUILD_VERSION = "2"
DEBIAN_ADMIN_USER = "debian"  # cloud-init's default_user on Debian
SUITE = "bookworm"
DISK_SIZE = 2048 * MIB
MIRROR = os.environ.get("KUMO_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SECURITY_MIRROR = os.environ.get("KUMO_DEBIAN_SECURITY_MIRROR",
                                 "http://deb.debian.org/debian-security")
KERNEL_PACKAGE = "linux-image-cloud-amd64"
PACKAGES = (
    KERNEL_PACKAGE, "systemd-sysv", "udev", "dbus", "cloud-init", "cloud-guest-utils",
    # systemd-networkd (not ifupdown): cloud-init's networkd renderer applies the link
    # MTU from network_data.json on a DHCP interface (seed 001: MTU 1450); ifupdown's
    # `inet dhcp` stanza left it at 1500.
    "openssh-server", "systemd-resolved", "e2fsprogs", "sudo", "netbase",
    "iproute2", "initramfs-tools", "ca-certificates", "locales",
)
# Documentation, manual pages and translations: ~100 MB nobody reads on a cloud VM.
EXCLUDES = ("/usr/share/doc/*", "/usr/share/man/*", "/usr/share/locale/*", "/usr/share/info/*")
KERNEL_CMDLINE = "ro console=tty0 console=ttyS0,115200n8"
CLOUD_CFG = """\
# Written by kumo image build debian.
# Every source OpenStack offers (config drive, metadata service) and a NoCloud seed.
datasource_list: [ NoCloud, ConfigDrive, OpenStack, Ec2, None ]
# cloud-init 22.4's locale module fails on Debian and marks the boot degraded.
locale: C.UTF-8
# Else sudo warns that it cannot resolve the instance's hostname.
manage_etc_hosts: true
system_info:
  network:
    renderers: [ networkd ]
"""
TOOLS = {
    "mmdebstrap": "mmdebstrap", "apt-cache": "apt", "sfdisk": "fdisk",
    "mke2fs": "e2fsprogs", "e2fsck": "e2fsprogs", "grub-mkimage": "grub-pc-bin",
    "qemu-img": "qemu-utils",
}


def debian_image_properties() -> dict[str, str]:
    """Glance properties to set when uploading the Debian image."""
    return {
        **COMMON_PROPERTIES,
        "os_admin_user": DEBIAN_ADMIN_USER,
        "os_distro": "debian",
        "os_version": "12",
    }


def sources() -> list[str]:
    return [
        f"deb {MIRROR} {SUITE} main",
        f"deb {MIRROR} {SUITE}-updates main",
        f"deb {SECURITY_MIRROR} {SUITE}-security main",
    ]


def build_inputs() -> dict[str, str]:
    """What decides the image's bytes: versions apt picks now, this recipe, host tools."""
    inputs = {f"deb:{name}": deb.version for name, deb in candidates(list(PACKAGES)).items()}
    kernel = real_package(KERNEL_PACKAGE, "linux-image-")
    inputs[f"deb:{kernel.name}"] = kernel.version
    inputs.update({
        "build": DEBIAN_BUILD_VERSION, "sources": " | ".join(sources()),
        "cloud.cfg": CLOUD_CFG, "cmdline": KERNEL_CMDLINE, "size": str(DISK_SIZE),
        "host:grub-pc-bin": installed_version("grub-pc-bin"),
        "host:mmdebstrap": installed_version("mmdebstrap"),
    })
    return inputs


def build(out: Path, *, steps: StepReporter = quiet, rebuild: bool = False,
          cache: BuildCache | None = None) -> BuildResult:
    """Build (or take from the cache) the Debian cloud image and write it to `out` (qcow2)."""
    started = time.monotonic()
    sizes: dict[str, int] = {}
    image, cached, key = ensure_built(steps=steps, rebuild=rebuild, cache=cache, sizes=sizes)
    _deliver(image, out)
    sizes["qcow2"] = out.stat().st_size
    return BuildResult(
        path=out, cached=cached, cache_key=key, seconds=time.monotonic() - started,
        sizes=sizes, properties=debian_image_properties(),
    )


def cached_image(cache: BuildCache | None = None) -> Path:
    """The Debian image's qcow2 in the build cache (built first if needed). Read-only."""
    return ensure_built(cache=cache)[0]


def ensure_built(*, steps: StepReporter = quiet, rebuild: bool = False,
                 cache: BuildCache | None = None,
                 sizes: dict[str, int] | None = None) -> tuple[Path, bool, str]:
    """(cached qcow2, whether it was there already, inputs key)."""
    cache = cache or BuildCache()
    for program, package in TOOLS.items():
        require(program, package)
    steps("resolving package versions")
    inputs = build_inputs()
    key = inputs_key(inputs)
    image, cached = cache.ensure(
        "debian", key,
        lambda: _build_into_cache(cache, key, inputs, steps, {} if sizes is None else sizes),
        steps=steps, rebuild=rebuild,
    )
    return image, cached, key


def _build_into_cache(cache: BuildCache, key: str, inputs: dict[str, str],
                      steps: StepReporter, sizes: dict[str, int]) -> Path:
    with cache.scratch("debian") as work, disk_full_is_clear(work / "debian.raw"):
        root = work / "root"
        steps(f"installing {len(PACKAGES)} Debian packages with mmdebstrap (about a minute)")
        bootstrap(root)
        steps("making it a cloud image (cloud-init, fstab, no host keys)")
        fs_uuid = new_fs_uuid()
        customize(root, fs_uuid)
        steps("writing the disk (MBR, ext4, GRUB)")
        raw = work / "debian.raw"
        entry = BootEntry(kernel="/vmlinuz", initrd="/initrd.img", title="Debian GNU/Linux 12",
                          cmdline=f"root=UUID={fs_uuid} {KERNEL_CMDLINE}")
        shutil.rmtree(root / "boot" / "grub", ignore_errors=True)
        assemble_disk(root, raw, size_bytes=DISK_SIZE, entry=entry, fs_uuid=fs_uuid)
        check_filesystem(raw)
        sizes["raw"] = raw.stat().st_blocks * 512
        shutil.rmtree(root)
        steps("converting to compressed qcow2")
        qcow2 = work / "debian.qcow2"
        qemuimg.convert(raw, "raw", qcow2, "qcow2", compress=True,
                        options={"compression_type": "zstd"})
        return cache.store("debian", key, qcow2, inputs)


def bootstrap(root: Path) -> None:
    """`mmdebstrap` the package set into `root` (a plain directory)."""
    args: list[str | Path] = ["--variant=apt", "--include=" + ",".join(PACKAGES)]
    # Debian does not enable networkd by itself; systemctl enable works in a chroot.
    args.append('--customize-hook=chroot "$1" systemctl enable systemd-networkd.service')
    args += [f"--dpkgopt=path-exclude={pattern}" for pattern in EXCLUDES]
    args += ["--dpkgopt=path-include=/usr/share/doc/*/copyright", SUITE, root, *sources()]
    try:
        run("mmdebstrap", args, package="mmdebstrap", timeout=1800)
    except ToolError as exc:
        text = exc.message
        if "No space left" in text:
            raise  # disk_full_is_clear turns it into InsufficientStorage
        missing = [line for line in text.splitlines() if "Unable to locate package" in line
                   or "has no installation candidate" in line]
        if missing:
            raise BadRequest(f"a package of the Debian image is not available: {missing[0]}; "
                             "check the mirror (KUMO_DEBIAN_MIRROR) and apt-get update") from None
        raise


def customize(root: Path, fs_uuid: str) -> None:
    """Turn the bootstrapped tree into a cloud image (the parts cloud-init does not redo)."""
    etc = root / "etc"
    (etc / "cloud" / "cloud.cfg.d" / "01_kumo.cfg").write_text(CLOUD_CFG)
    (etc / "fstab").write_text(f"UUID={fs_uuid} / ext4 defaults,errors=remount-ro 0 1\n")
    (etc / "hostname").write_text("debian\n")
    (etc / "hosts").write_text("127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")
    # Each instance gets its own identity at first boot.
    (etc / "machine-id").write_text("")
    dbus_id = root / "var" / "lib" / "dbus" / "machine-id"
    if dbus_id.is_file() and not dbus_id.is_symlink():
        dbus_id.unlink()
    for key in (etc / "ssh").glob("ssh_host_*"):
        key.unlink()
    # The build host's resolver means nothing in an instance: systemd-resolved's stub
    # serves what DHCP (networkd) learns.
    resolv = etc / "resolv.conf"
    if resolv.exists() or resolv.is_symlink():
        resolv.unlink()
    resolv.symlink_to("../run/systemd/resolve/stub-resolv.conf")
    for path in (root / "var" / "log").rglob("*"):
        if path.is_file():
            path.write_bytes(b"")


def _deliver(image: Path, out: Path) -> None:
    out = out.absolute()
    partial = out.with_name(f".{out.name}.part")
    with disk_full_is_clear(out):
        shutil.copyfile(image, partial)
        os.replace(partial, out)
