"""What lint rules look at: an image's partitions, root filesystem, boot files and services."""

from __future__ import annotations

import fnmatch
import re
import struct
from dataclasses import dataclass
from functools import cached_property

from kumo.imagebuild.lint.initramfs import Initramfs, read_initramfs
from kumo.imagebuild.reader import BlockSource, Ext4, ImageUnreadable, Partition, partitions

SYSTEMD_DIRS = ("/etc/systemd/system", "/usr/lib/systemd/system", "/lib/systemd/system")
# Files a script-only guest (no cloud-init, no systemd) starts its work from.
SCRIPT_DIRS = ("/etc/init.d", "/etc/local.d", "/etc/rc.d", "/usr/local/bin", "/usr/local/sbin",
               "/etc/rc.d/init.d", "/etc/systemd/system")
SCRIPT_FILES = ("/etc/rc.local", "/etc/inittab", "/init", "/sbin/init", "/etc/rc", "/etc/profile")
SOURCED = re.compile(r"^\s*(?:\.|source)\s+(/[\w./-]+)", re.M)
GRUB_CFGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg")
EXTLINUX_CFGS = ("/boot/extlinux/extlinux.conf", "/boot/extlinux.conf", "/extlinux.conf",
                 "/boot/syslinux/syslinux.cfg", "/boot/syslinux.cfg", "/syslinux.cfg")


@dataclass(frozen=True)
class Kernel:
    path: str
    version: str | None
    initrd: str | None


class ImageView:
    """Read-only questions about one disk image, answered from as few blocks as possible."""

    def __init__(self, source: BlockSource) -> None:
        self.source = source
        self.partitions: list[Partition] = partitions(source)
        self.root_partition: Partition | None = None
        self.root: Ext4 | None = None
        self._initramfs: dict[str, Initramfs | None] = {}
        for part in self.partitions:
            if not part.filesystem.startswith("ext"):
                continue
            fs = Ext4(source, part.start)
            found = fs.lookup("/etc")
            if self.root is None or (found is not None and found.is_dir):
                self.root, self.root_partition = fs, part
                if found is not None and found.is_dir:
                    break

    @property
    def fs(self) -> Ext4:
        if self.root is None:
            raise ImageUnreadable("no root filesystem")
        return self.root

    # ---- files

    def text(self, path: str, limit: int = 1 << 20) -> str | None:
        return self.fs.text(path, limit)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def glob(self, directory: str, pattern: str = "*") -> list[str]:
        """Paths of entries of `directory` whose name matches `pattern`."""
        base = directory.rstrip("/")
        return [f"{base}/{n}" for n in self.fs.listdir(directory) if fnmatch.fnmatch(n, pattern)]

    def is_file(self, path: str) -> bool:
        inode = self.fs.lookup(path)
        return inode is not None and inode.is_file

    def first_existing(self, *paths: str) -> str | None:
        return next((p for p in paths if self.is_file(p)), None)

    # ---- services

    @cached_property
    def has_systemd(self) -> bool:
        return self.is_file("/lib/systemd/systemd") or self.is_file("/usr/lib/systemd/systemd")

    def unit_masked(self, unit: str) -> bool:
        return self.fs.readlink(f"/etc/systemd/system/{unit}") == "/dev/null"

    def unit_links(self, unit: str) -> list[str]:
        """The `*.wants/` (and `*.requires/`) links that start `unit` at boot."""
        if not self.has_systemd or self.unit_masked(unit):
            return []
        links = []
        for directory in SYSTEMD_DIRS:
            for sub in self.fs.listdir(directory):
                if sub.endswith((".wants", ".requires")) and self.fs.exists(
                    f"{directory}/{sub}/{unit}", follow=False
                ):
                    links.append(f"{directory}/{sub}/{unit}")
        return links

    def sysv_links(self, name: str) -> list[str]:
        """`/etc/rcN.d/S??name` start links of SysV-style init (runlevels 2 to 5)."""
        return [p for level in "2345" for p in self.glob(f"/etc/rc{level}.d", f"S??{name}")]

    def unit_file(self, unit: str) -> str | None:
        for directory in SYSTEMD_DIRS:
            path = f"{directory}/{unit}"
            inode = self.fs.lookup(path)
            if inode is not None and inode.is_file:
                return path
        return None

    # ---- scripts (for images without cloud-init or systemd)

    @cached_property
    def scripts(self) -> dict[str, str]:
        """Text of boot-time scripts in the root and in the initramfs ("initrd:" prefix)."""
        found: dict[str, str] = {}
        candidates = list(SCRIPT_FILES)
        for directory in SCRIPT_DIRS:
            candidates += self.glob(directory)
        for path in candidates:
            inode = self.fs.lookup(path)
            if inode is None or not inode.is_file or inode.size > 256 * 1024:
                continue
            text = self.fs.text(path) or ""
            if text.startswith("#!") or path.endswith((".service", "inittab", ".start")):
                found[path] = text
        # Files those scripts source (`. /usr/lib/x/functions`) are part of them.
        pending = [p for text in found.values() for p in SOURCED.findall(text)]
        while pending and len(found) < 500:
            path = pending.pop()
            inode = self.fs.lookup(path)
            if path in found or inode is None or not inode.is_file or inode.size > 256 * 1024:
                continue
            found[path] = self.fs.text(path) or ""
            pending += SOURCED.findall(found[path])
        for kernel in self.kernels:
            image = self.initramfs(kernel.initrd) if kernel.initrd else None
            for name, text in (image.scripts if image else {}).items():
                found[f"initrd:/{name}"] = text
        return found

    def scripts_mentioning(self, *words: str) -> list[str]:
        return [path for path, text in self.scripts.items() if any(w in text for w in words)]

    # ---- boot

    @cached_property
    def boot_configs(self) -> dict[str, str]:
        """Bootloader configurations (GRUB, extlinux/syslinux) by path."""
        found = {}
        for path in (*GRUB_CFGS, *EXTLINUX_CFGS, "/etc/default/grub"):
            text = self.text(path)
            if text is not None:
                found[path] = text
        return found

    @cached_property
    def kernels(self) -> list[Kernel]:
        """Kernels the boot configuration names, else the usual /boot names."""
        pairs: list[tuple[str, str | None]] = []
        for path, text in self.boot_configs.items():
            if path != "/etc/default/grub":
                pairs += _boot_entries(text, path in GRUB_CFGS)
        if not pairs:
            for path in [*self.glob("/boot", "vmlinuz*"), *self.glob("/boot", "bzImage*"),
                         "/vmlinuz"]:
                pairs.append((path, None))
        found: dict[str, Kernel] = {}
        for path, initrd in pairs:
            real = self.fs.realpath(path)
            if real is None or real in found or not self.is_file(real):
                continue
            version = self._kernel_version(real)
            if initrd is None and version:
                initrd = self.first_existing(
                    f"/boot/initrd.img-{version}", f"/boot/initramfs-{version}.img",
                    f"/boot/initrd-{version}",
                )
            found[real] = Kernel(real, version, self.fs.realpath(initrd) if initrd else None)
        return list(found.values())

    def _kernel_version(self, path: str) -> str | None:
        name = path.rsplit("/", 1)[-1]
        if name.startswith("vmlinuz-"):
            return name.removeprefix("vmlinuz-")
        head = self.fs.read(path, 0x1000) or b""
        if len(head) < 0x210 or head[0x202:0x206] != b"HdrS":
            return None
        at = struct.unpack_from("<H", head, 0x20E)[0] + 0x200
        raw = (self.fs.read(path, at + 256) or b"")[at:]
        text = raw.split(b"\0", 1)[0].decode("ascii", "replace").split()
        return text[0] if text else None

    def initramfs(self, path: str) -> Initramfs | None:
        if path not in self._initramfs:
            inode = self.fs.lookup(path)
            self._initramfs[path] = (
                read_initramfs(self.fs.chunks(inode)) if inode and inode.is_file else None
            )
        return self._initramfs[path]

    def builtin_modules(self, version: str) -> set[str] | None:
        """Module names built into kernel `version` (modules.builtin, else config-VER)."""
        text = self.text(f"/lib/modules/{version}/modules.builtin")
        if text is not None:
            return {line.rsplit("/", 1)[-1].split(".ko")[0] for line in text.split()}
        config = self.text(f"/boot/config-{version}")
        if config is None:
            return None
        return {_CONFIG_MODULES[m.group(1)] for m in re.finditer(r"^(CONFIG_\w+)=y", config, re.M)
                if m.group(1) in _CONFIG_MODULES}

    def module_installed(self, version: str, module: str) -> bool:
        directory = f"/lib/modules/{version}/kernel/drivers"
        subdirs = {"virtio_blk": "block", "virtio_net": "net", "virtio_pci": "virtio"}
        sub = subdirs.get(module, "")
        return bool(self.glob(f"{directory}/{sub}", f"{module}.ko*"))


_CONFIG_MODULES = {
    "CONFIG_VIRTIO_BLK": "virtio_blk", "CONFIG_VIRTIO_NET": "virtio_net",
    "CONFIG_VIRTIO_PCI": "virtio_pci",
}


def _boot_entries(text: str, grub: bool) -> list[tuple[str, str | None]]:
    """(kernel, initrd) pairs of a grub.cfg or extlinux.conf."""
    pairs: list[tuple[str, str | None]] = []
    kernel_words = ("linux", "linux16", "linuxefi") if grub else ("kernel", "linux")
    initrd_words = ("initrd", "initrd16", "initrdefi")
    for line in text.splitlines():
        words = line.split()
        if len(words) < 2:
            continue
        word = words[0].lower()
        if word in kernel_words:
            pairs.append((_grub_path(words[1]), None))
        elif word in initrd_words and pairs and pairs[-1][1] is None:
            pairs[-1] = (pairs[-1][0], _grub_path(words[1].split(",")[0]))
        elif word == "append" and not grub:
            for option in words[1:]:
                if option.startswith("initrd=") and pairs:
                    pairs[-1] = (pairs[-1][0], _grub_path(option.split("=", 1)[1]))
    return pairs


def _grub_path(path: str) -> str:
    """A GRUB path like (hd0,msdos1)/boot/vmlinuz, as a path in the filesystem."""
    path = re.sub(r"^\([^)]*\)", "", path)
    return path if path.startswith("/") else "/" + path
