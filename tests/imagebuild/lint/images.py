"""Small synthetic disk images for lint tests: a tree made into MBR + ext4 with mke2fs -d.

`good_tree()` meets every rule; each test changes one thing. A disk takes ~50 ms.
"""

from __future__ import annotations

import gzip
import os
import subprocess
from pathlib import Path

KERNEL_VERSION = "6.1.0-test"
MIB = 1024 * 1024
GRUB_CFG = f"""\
serial --unit=0 --speed=115200
terminal_output serial console
menuentry 'Linux' {{
    linux /boot/vmlinuz-{KERNEL_VERSION} root=UUID=x ro console=tty0 console=ttyS0,115200n8
    initrd /boot/initrd.img-{KERNEL_VERSION}
}}
"""
VIRTIO = ("kernel/drivers/block/virtio_blk.ko", "kernel/drivers/virtio/virtio_pci.ko",
          "kernel/drivers/net/virtio_net.ko")


def newc(files: dict[str, bytes]) -> bytes:
    """A cpio newc archive of `files` (name -> bytes), like an initramfs."""
    out = bytearray()
    for number, (name, data) in enumerate([*files.items(), ("TRAILER!!!", b"")], start=1):
        raw = name.encode() + b"\0"
        mode = 0o100755 if name != "TRAILER!!!" else 0
        fields = [number, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(raw), 0]
        out += b"070701" + b"".join(b"%08X" % f for f in fields) + raw
        out += bytes(-len(out) % 4)
        out += data
        out += bytes(-len(out) % 4)
    return bytes(out)


def initrd(modules: tuple[str, ...] = VIRTIO, extra: dict[str, bytes] | None = None) -> bytes:
    files = {"init": b"#!/bin/sh\nexec /sbin/init\n"}
    files.update({f"usr/lib/modules/{KERNEL_VERSION}/{m}": b"\x7fELF" for m in modules})
    files.update(extra or {})
    # An uncompressed early archive then a gzip one, as initramfs-tools writes them.
    early = newc({"kernel/x86/microcode/GenuineIntel.bin": b"ucode"})
    return early + bytes(-len(early) % 512) + gzip.compress(newc(files))


def write(root: Path, path: str, data: bytes | str = b"", mode: int = 0o644) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.write_bytes(data.encode() if isinstance(data, str) else data)
    target.chmod(mode)
    return target


def link(root: Path, path: str, target: str) -> None:
    where = root / path.lstrip("/")
    where.parent.mkdir(parents=True, exist_ok=True)
    if where.is_symlink() or where.exists():
        where.unlink()
    os.symlink(target, where)


def good_tree(root: Path) -> Path:
    """A minimal tree that passes every lint rule (merged /usr like Debian 12)."""
    for top in ("bin", "sbin", "lib"):
        link(root, top, f"usr/{top}")
    write(root, "/etc/fstab", "UUID=x / ext4 defaults 0 1\n")
    write(root, "/usr/bin/cloud-init", "#!/usr/bin/python3\n", 0o755)
    write(root, "/etc/cloud/cloud.cfg", "datasource_list: [ NoCloud, ConfigDrive, OpenStack ]\n"
          "cloud_init_modules:\n - growpart\n")
    write(root, "/usr/bin/growpart", "#!/bin/sh\n", 0o755)
    write(root, "/usr/lib/systemd/systemd", b"\x7fELF", 0o755)
    write(root, "/usr/sbin/sshd", b"\x7fELF", 0o755)
    write(root, "/usr/lib/systemd/system/ssh.service", "[Service]\nExecStart=/usr/sbin/sshd\n")
    link(root, "/etc/systemd/system/multi-user.target.wants/ssh.service",
         "/lib/systemd/system/ssh.service")
    write(root, "/usr/lib/systemd/system/firewalld.service", "[Service]\n")
    write(root, "/etc/ufw/ufw.conf", "ENABLED=no\n")
    write(root, "/usr/lib/systemd/system/ufw.service", "[Service]\n")
    link(root, "/etc/systemd/system/multi-user.target.wants/ufw.service",
         "/lib/systemd/system/ufw.service")
    (root / "etc/udev/rules.d").mkdir(parents=True)
    write(root, "/usr/lib/udev/rules.d/80-net-setup-link.rules", "# nothing\n")
    write(root, "/boot/grub/grub.cfg", GRUB_CFG)
    write(root, "/etc/default/grub",
          'GRUB_CMDLINE_LINUX_DEFAULT="console=tty0 console=ttyS0,115200n8"\n')
    write(root, f"/boot/vmlinuz-{KERNEL_VERSION}", b"MZ" + bytes(1024))
    write(root, f"/boot/initrd.img-{KERNEL_VERSION}", initrd())
    return root


def make_disk(tree: Path, out: Path, *, fs_type: str = "ext4", size_mib: int = 32,
              fmt: str = "raw", block_size: int | None = None, label: str = "dos") -> Path:
    """An MBR (or GPT) disk with one partition at 1 MiB holding `tree` as ext2/3/4."""
    raw = out.with_suffix(".raw")
    with raw.open("wb") as disk:
        disk.truncate(size_mib * MIB)
    table = f"label: {label}\nstart=2048, type={'83' if label == 'dos' else 'L'}\n"
    subprocess.run(["sfdisk", "-q", str(raw)], input=table.encode(), check=True)
    args = ["mke2fs", "-q", "-F", "-t", fs_type, "-d", str(tree), "-E", f"offset={MIB}"]
    if block_size:
        args += ["-b", str(block_size)]
    subprocess.run([*args, str(raw), f"{(size_mib - 1) * 1024 - 64}k"], check=True)
    if fmt == "raw":
        return raw
    subprocess.run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", str(raw), str(out)],
                   check=True)
    raw.unlink()
    return out
