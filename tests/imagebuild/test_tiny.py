"""The tiny image: what is on the disk, the cache, the boot scripts' JSON parsing.

Booting it is tests/e2e/test_tiny_boot.py.
"""

from __future__ import annotations

import gzip
import json
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from kumo.imagebuild import builder_for, tiny
from kumo.imagebuild.disk import PARTITION_START, check_filesystem
from kumo.imagebuild.initramfs import ElfFile

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_raw(tiny_image: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    raw = tmp_path_factory.mktemp("tiny") / "tiny.raw"
    subprocess.run(["qemu-img", "convert", "-f", "qcow2", "-O", "raw", str(tiny_image), str(raw)],
                   check=True)
    return raw


def debugfs(raw: Path, request: str) -> str:
    return subprocess.run(["debugfs", "-R", request, f"{raw}?offset={PARTITION_START}"],
                          capture_output=True, text=True, check=True).stdout


def cpio_names(data: bytes) -> list[str]:
    names, offset = [], 0
    while True:
        header = data[offset : offset + 110]
        size, namesize = int(header[54:62], 16), int(header[94:102], 16)
        name = data[offset + 110 : offset + 110 + namesize - 1].decode()
        if name == "TRAILER!!!":
            return names
        names.append(name)
        offset += 110 + namesize
        offset += -offset % 4
        offset += size + (-size % 4)


def test_image_is_a_small_qcow2(tiny_image: Path) -> None:
    info = json.loads(subprocess.run(["qemu-img", "info", "--output=json", str(tiny_image)],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["format"] == "qcow2"
    assert info["virtual-size"] == tiny.TINY_DISK_SIZE
    assert tiny_image.stat().st_size < 40 * 1024 * 1024


def test_disk_layout_and_boot_configuration(tiny_raw: Path) -> None:
    check_filesystem(tiny_raw)
    table = json.loads(subprocess.run(["sfdisk", "--json", str(tiny_raw)], capture_output=True,
                                      text=True, check=True).stdout)["partitiontable"]
    assert [(p["start"], p["type"]) for p in table["partitions"]] == [(2048, "83")]
    grub_cfg = debugfs(tiny_raw, "cat /boot/grub/grub.cfg")
    assert "set timeout=0" in grub_cfg
    assert "console=ttyS0,115200n8" in grub_cfg
    assert "serial --unit=0" in grub_cfg
    # The fast path under software emulation: GRUB's 16-bit loader, no crypto
    # self-tests; ACPI IRQ routing stays on, or hot-plugged disks never appear on q35
    # (see tiny.KERNEL_CMDLINE).
    assert re.search(r"^\s*linux16 /boot/vmlinuz-\S+ root=UUID=\S+ .*cryptomgr\.notests",
                     grub_cfg, re.M)
    assert "acpi=noirq" not in grub_cfg
    assert re.search(r"^\s*initrd16 /boot/initrd\.img-", grub_cfg, re.M)


def test_identity_is_left_for_first_boot(tiny_raw: Path) -> None:
    assert debugfs(tiny_raw, "cat /etc/machine-id") == ""
    assert "host_key" not in debugfs(tiny_raw, "ls /etc/dropbear")
    passwd = debugfs(tiny_raw, "cat /etc/passwd")
    assert f"{tiny.TINY_ADMIN_USER}:x:1000:1000:" in passwd
    # sudo's setuid busybox: root-owned, setuid, executable by group sudo only.
    stat = debugfs(tiny_raw, "stat /usr/lib/tiny/static/busybox")
    assert "Mode:  04750" in stat and "User:     0   Group:    27" in stat


def test_network_tools_are_dynamic_busybox_and_unprivileged_ping(tiny_raw: Path,
                                                                 tmp_path: Path) -> None:
    def dump(path: str) -> Path:
        out = tmp_path / path.strip("/").replace("/", "_")
        subprocess.run(["debugfs", "-R", f"dump {path} {out}",
                        f"{tiny_raw}?offset={PARTITION_START}"], check=True, capture_output=True)
        return out

    # /bin/busybox is Debian's dynamic build (glibc's own NSS resolves names); the
    # initramfs and sudo keep busybox-static (no libraries there; `su`).
    assert ElfFile(dump("/bin/busybox")).interpreter() == "/lib64/ld-linux-x86-64.so.2"
    assert ElfFile(dump("/usr/lib/tiny/static/busybox")).interpreter() is None
    for library in ("libc.so.6", "libresolv.so.2"):
        assert "Type: regular" in debugfs(tiny_raw, f"stat /lib/x86_64-linux-gnu/{library}")
    assert "hosts: files dns" in debugfs(tiny_raw, "cat /etc/nsswitch.conf")
    assert "icmp" in debugfs(tiny_raw, "cat /etc/protocols")  # netbase
    # ping: inetutils without Debian's setuid bit (rcS opens ICMP echo sockets to all)
    for ping in ("/bin/ping", "/bin/ping6"):
        assert "Mode:  0755" in debugfs(tiny_raw, f"stat {ping}")
    assert "ping_group_range" in debugfs(tiny_raw, "cat /etc/init.d/rcS")
    assert dump("/usr/bin/wget").read_bytes().startswith(b"#!/bin/sh")  # -T through `timeout`
    # applets in sbin are on a non-root PATH (/usr/bin:/bin) too
    for link in ("/sbin/ip", "/bin/ip", "/sbin/ifconfig", "/bin/ifconfig", "/usr/bin/nc",
                 "/usr/bin/nslookup"):
        assert 'Fast link dest: "/bin/busybox"' in debugfs(tiny_raw, f"stat {link}")


def test_initramfs_carries_the_virtio_drivers_in_dependency_order(tiny_raw: Path,
                                                                  tmp_path: Path) -> None:
    [initrd] = [line.split()[-1] for line in debugfs(tiny_raw, "ls -l /boot").splitlines()
                if "initrd.img-" in line]
    subprocess.run(["debugfs", "-R", f"dump /boot/{initrd} {tmp_path / 'initrd'}",
                    f"{tiny_raw}?offset={PARTITION_START}"], check=True, capture_output=True)
    data = gzip.decompress((tmp_path / "initrd").read_bytes())
    names = cpio_names(data)
    for module in ("virtio_blk", "virtio_net", "virtio_pci", "isofs", "button", "evdev"):
        assert f"lib/modules/tiny/{module}.ko" in names
    assert "init" in names and "dev/console" in names
    order_start = data.index(b"virtio_ring\n")
    assert order_start < data.index(b"virtio_net\n", order_start)
    assert data.index(b"failover\n", order_start) < data.index(b"virtio_net\n", order_start)


def test_build_writes_the_cached_image_and_reports_properties(tiny_image: Path,
                                                              tmp_path: Path) -> None:
    started = time.monotonic()
    result = builder_for("tiny")(tmp_path / "out.qcow2")
    assert result.cached
    assert time.monotonic() - started < 60
    assert (tmp_path / "out.qcow2").read_bytes() == tiny_image.read_bytes()
    assert result.properties["os_admin_user"] == "tiny"
    assert tiny.tiny_image_properties()["os_admin_user"] == tiny.TINY_ADMIN_USER


@pytest.mark.skipif(shutil.which("busybox") is None, reason="busybox is not installed")
def test_boot_scripts_read_keys_and_hostname_from_nova_meta_data_json(tmp_path: Path) -> None:
    meta = {
        "uuid": "83679162-1378-4288-a2d4-70e13ec132aa",
        "meta": {"hostname": "not-this-one"},
        "public_keys": {"mykey": "ssh-ed25519 AAAAC3 me@host\n", "other": "ssh-rsa AAAAB3 x"},
        "keys": [{"name": "mykey", "type": "ssh", "data": "ssh-ed25519 AAAAC3 me@host\n"}],
        "hostname": "vm-1.novalocal",
        "name": "vm \"one\"",
    }
    (tmp_path / "meta_data.json").write_text(json.dumps(meta))
    functions = tiny.files_dir() / "usr/lib/tiny/functions"

    def values(field: str) -> list[str]:
        script = f". {functions}; json_values {field} < {tmp_path / 'meta_data.json'}"
        out = subprocess.run(["busybox", "sh", "-c", script], capture_output=True, text=True,
                             check=True).stdout
        return [line for line in out.splitlines() if line]

    assert values("public_keys") == ["ssh-ed25519 AAAAC3 me@host", "ssh-rsa AAAAB3 x"]
    assert values("hostname") == ["vm-1.novalocal"]
    assert values("uuid") == [meta["uuid"]]
    assert values("name") == ['vm "one"']
