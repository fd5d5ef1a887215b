"""Crafted qcow2 files: a real image from qemu-img with one header field made absurd."""

from __future__ import annotations

import struct
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

# qcow2 header offsets (docs/interop/qcow2.txt)
CLUSTER_BITS, L1_SIZE, L1_OFFSET, CRYPT = 20, 36, 40, 32
SNAPSHOTS = 60
REFCOUNT_ORDER, HEADER_LENGTH = 96, 100


def _put(fmt: str, offset: int, value: int) -> Callable[[bytearray], None]:
    def change(head: bytearray) -> None:
        struct.pack_into(fmt, head, offset, value)

    return change


# name -> how to spoil a good qcow2 v3 header
CRAFTED: dict[str, Callable[[bytearray], None]] = {
    "l1-size-2^31": _put(">I", L1_SIZE, 0x7FFFFFFF),
    "l1-offset-2^62": _put(">Q", L1_OFFSET, 1 << 62),
    "refcount-order-7": _put(">I", REFCOUNT_ORDER, 7),
    "cluster-bits-0": _put(">I", CLUSTER_BITS, 0),
    "cluster-bits-62": _put(">I", CLUSTER_BITS, 62),
    "header-length-beyond-file": _put(">I", HEADER_LENGTH, 0x7FFFFFF0),
    "snapshots-huge": _put(">I", SNAPSHOTS, 0x7FFFFFFF),
}


def good_qcow2(path: Path, size: str = "64M") -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), size], check=True)
    return path


def crafted_qcow2(path: Path, name: str) -> Path:
    good_qcow2(path)
    data = bytearray(path.read_bytes())
    CRAFTED[name](data)
    path.write_bytes(bytes(data))
    return path


def encrypted_qcow2(path: Path) -> Path:
    """A LUKS-encrypted qcow2, as qemu-img makes one (kumo can boot no such disk).

    qemu-img times PBKDF2 by its thread's CPU clock to pick the iteration count; on a busy
    machine that reading can come back unchanged and it gives up ("Unable to get accurate
    CPU usage", once in a full CI run, and four times in a row in a fresh clone's run
    beside another test run): such a try is made again, a moment later."""
    command = ["qemu-img", "create", "-q", "--object", "secret,id=s0,data=k", "-f", "qcow2",
               "-o", "encrypt.format=luks,encrypt.key-secret=s0", str(path), "64M"]
    for _ in range(12):
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode == 0:
            return path
        if "Unable to get accurate CPU usage" not in done.stderr:
            break
        time.sleep(0.25)
    raise AssertionError(f"qemu-img could not make an encrypted qcow2: {done.stderr.strip()}")
