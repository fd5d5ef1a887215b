"""Read files inside a disk image without booting, mounting or converting it.

Only the blocks a question needs are read: a lint of a 2 GiB Debian image touches
a few megabytes. Everything here is pure Python over `os.pread`:

- `Qcow2Source` maps guest offsets through the L1/L2 tables (zlib and zstd
  compressed clusters included) and refuses what would make it read other files
  (backing file, external data file) or guess (encryption, extended L2).
- `partitions()` reads MBR (primary + logical) and GPT tables and probes each
  partition's first blocks for ext2/3/4, LVM2, swap, XFS and btrfs.
- `Ext4` reads ext2/3/4: extent trees and indirect block maps, directories
  (htree directories read linearly), fast and slow symlinks resolved inside the
  image's root.

Why not debugfs or qemu-nbd: debugfs needs a raw file, so a qcow2 would first be
converted whole; qemu-nbd needs the nbd kernel module and a device; a FUSE
export is a mount. Writing (`lint --fix`) does use debugfs, on a raw copy.
"""

from __future__ import annotations

import io
import os
import struct
import uuid
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import zstandard

from kumo.errors import BadRequest

SECTOR = 512
MAX_SYMLINKS = 40
# No single read is larger than this (a disk's metadata never needs more): a crafted
# size field asking for gigabytes is an unreadable image, not a MemoryError.
MAX_READ = 64 * 1024 * 1024
ZEROS = bytes(1024 * 1024)


class ImageUnreadable(BadRequest):
    """The image (or the part of it a question needs) cannot be read here."""


def _bounded(offset: int, size: int) -> None:
    if size < 0 or offset < 0:
        raise ImageUnreadable(f"damaged image: a read of {size} bytes at {offset}")
    if size > MAX_READ:
        raise ImageUnreadable(f"damaged image: a size field asks for {size} bytes at once")


def _pread(fd: int, size: int, offset: int, file_size: int) -> bytes:
    """Bytes [offset, offset+size) of the host file, short past its real end."""
    _bounded(offset, size)
    if offset >= file_size:
        return b""
    return os.pread(fd, min(size, file_size - offset), offset)


class BlockSource(Protocol):
    size: int

    def read(self, offset: int, size: int) -> bytes: ...

    def close(self) -> None: ...


class RawSource:
    """A raw disk image file."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size

    def read(self, offset: int, size: int) -> bytes:
        data = _pread(self.fd, size, offset, self.size)
        return data + bytes(size - len(data))  # past EOF reads as zeros, like a disk

    def close(self) -> None:
        os.close(self.fd)


QCOW2_MAGIC = b"QFI\xfb"
QCOW2_OFFSET_MASK = 0x00FFFFFFFFFFFE00
QCOW2_KNOWN_INCOMPATIBLE = 0b11111  # dirty, corrupt, data file, compression type, extended L2


class Qcow2Source:
    """The guest view of a qcow2 image, read cluster by cluster on demand."""

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        self.file_size = os.fstat(self.fd).st_size
        try:
            self._parse_header()
        except BaseException:
            os.close(self.fd)
            raise
        self._l2_cache: dict[int, bytes] = {}
        self._cluster_cache: tuple[int, bytes] | None = None

    def _parse_header(self) -> None:
        head = os.pread(self.fd, 112, 0)
        if len(head) < 72 or head[:4] != QCOW2_MAGIC:
            raise ImageUnreadable("not a qcow2 image (bad magic)")
        (_, version, backing_offset, _, cluster_bits, size, crypt, l1_size, l1_offset) = (
            struct.unpack(">4sIQIIQIIQ", head[:48])
        )
        if version not in (2, 3):
            raise ImageUnreadable(f"qcow2 version {version} is not supported")
        incompatible, compression = 0, 0
        if version == 3:
            incompatible = struct.unpack(">Q", head[72:80])[0]
            header_length = struct.unpack(">I", head[100:104])[0]
            if incompatible & 0b1000 and header_length > 104:
                compression = head[104]
        if backing_offset:
            raise ImageUnreadable("the qcow2 image has a backing file; refused")
        if crypt:
            raise ImageUnreadable("the qcow2 image is encrypted")
        if incompatible & ~QCOW2_KNOWN_INCOMPATIBLE:
            raise ImageUnreadable(f"unknown qcow2 incompatible features {incompatible:#x}")
        if incompatible & 0b10:
            raise ImageUnreadable("the qcow2 image is marked corrupt; run qemu-img check -r")
        if incompatible & 0b100:
            raise ImageUnreadable("the qcow2 image has an external data file; refused")
        if incompatible & 0b10000:
            raise ImageUnreadable(
                "qcow2 extended L2 entries are not supported; "
                "convert with: qemu-img convert -f qcow2 -O qcow2 IN OUT"
            )
        if not 9 <= cluster_bits <= 21:
            raise ImageUnreadable(f"qcow2 cluster_bits {cluster_bits} out of range")
        snapshots = struct.unpack(">I", head[60:64])[0]
        refcount_order = struct.unpack(">I", head[96:100])[0] if version == 3 else 4
        if refcount_order > 6 or snapshots > 65536:  # QEMU's own limits
            raise ImageUnreadable(f"damaged qcow2: refcount order {refcount_order}, "
                                  f"{snapshots} snapshots")
        if version == 3 and not 104 <= header_length <= min(1 << cluster_bits, self.file_size):
            raise ImageUnreadable(f"damaged qcow2: header length {header_length} exceeds "
                                  "the cluster or the file")
        if compression not in (0, 1):
            raise ImageUnreadable(f"unknown qcow2 compression type {compression}")
        self.size = size
        self.cluster_bits = cluster_bits
        self.cluster_size = 1 << cluster_bits
        self.l2_entries = self.cluster_size // 8
        self.zstd = compression == 1
        if l1_offset + l1_size * 8 > self.file_size:
            raise ImageUnreadable(
                f"damaged qcow2: its L1 table ({l1_size} entries at {l1_offset:#x}) lies "
                f"beyond the end of the {self.file_size}-byte file"
            )
        self.l1 = struct.unpack(f">{l1_size}Q", _pread(self.fd, l1_size * 8, l1_offset,
                                                        self.file_size))

    def _l2_table(self, offset: int) -> bytes:
        table = self._l2_cache.get(offset)
        if table is None:
            if len(self._l2_cache) >= 64:
                self._l2_cache.pop(next(iter(self._l2_cache)))
            table = _pread(self.fd, self.cluster_size, offset, self.file_size)
            if len(table) < self.cluster_size:
                raise ImageUnreadable(f"damaged qcow2: an L2 table at {offset:#x} lies beyond "
                                      "the end of the file")
            self._l2_cache[offset] = table
        return table

    def _cluster(self, index: int) -> bytes | int | None:
        """Decompressed bytes, a host offset, or None for a cluster that reads as zeros."""
        l1_index, l2_index = divmod(index, self.l2_entries)
        if l1_index >= len(self.l1):
            return None
        l2_offset = self.l1[l1_index] & QCOW2_OFFSET_MASK
        if not l2_offset:
            return None
        entry = struct.unpack_from(">Q", self._l2_table(l2_offset), l2_index * 8)[0]
        if entry & (1 << 62):
            return self._compressed(index, entry)
        if entry & 1:
            return None
        return (entry & QCOW2_OFFSET_MASK) or None

    def _compressed(self, index: int, entry: int) -> bytes:
        if self._cluster_cache and self._cluster_cache[0] == index:
            return self._cluster_cache[1]
        shift = 62 - (self.cluster_bits - 8)
        host = entry & ((1 << shift) - 1)
        sectors = (entry >> shift) & ((1 << (self.cluster_bits - 8)) - 1)
        raw = _pread(self.fd, (sectors + 1) * SECTOR - (host & (SECTOR - 1)), host,
                     self.file_size)
        try:
            if self.zstd:
                # A stream reader bounds the output: a small frame cannot expand to gigabytes.
                with zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw)) as reader:
                    data = reader.read(self.cluster_size)
            else:
                data = zlib.decompressobj(-12).decompress(raw, self.cluster_size)
        except (zlib.error, zstandard.ZstdError) as exc:
            raise ImageUnreadable(f"damaged qcow2: compressed cluster {index} does not "
                                  f"decompress ({exc})") from None
        data = data[: self.cluster_size].ljust(self.cluster_size, b"\0")
        self._cluster_cache = (index, data)
        return data

    def read(self, offset: int, size: int) -> bytes:
        _bounded(offset, size)
        out = bytearray()
        end = min(offset + size, self.size)
        while offset < end:
            index, within = divmod(offset, self.cluster_size)
            length = min(self.cluster_size - within, end - offset)
            found = self._cluster(index)
            if found is None:
                out += bytes(length)
            elif isinstance(found, bytes):
                out += found[within : within + length]
            else:
                chunk = _pread(self.fd, length, found + within, self.file_size)
                out += chunk + bytes(length - len(chunk))
            offset += length
        return bytes(out) + bytes(size - len(out))

    def close(self) -> None:
        os.close(self.fd)


OTHER_FORMATS = {b"KDMV": "vmdk", b"conectix": "vpc", b"vhdxfile": "vhdx", b"QEVM": "qed"}


def detect_format(path: Path) -> str:
    """'qcow2' or 'raw'; other formats are named and refused."""
    with open(path, "rb") as f:
        head = f.read(8)
    if head[:4] == QCOW2_MAGIC:
        return "qcow2"
    for magic, name in OTHER_FORMATS.items():
        if head.startswith(magic):
            raise ImageUnreadable(
                f"{path.name} is {name}; convert it first: qemu-img convert -f {name} -O qcow2"
            )
    return "raw"


@contextmanager
def open_source(path: Path, fmt: str | None = None) -> Iterator[BlockSource]:
    """The guest-visible bytes of a raw or qcow2 image file."""
    if not path.is_file():
        raise ImageUnreadable(f"{path}: no such image file")
    fmt = fmt or detect_format(path)
    if fmt not in ("raw", "qcow2"):
        raise ImageUnreadable(f"disk format {fmt!r} cannot be read; use raw or qcow2")
    source: BlockSource = Qcow2Source(path) if fmt == "qcow2" else RawSource(path)
    try:
        yield source
    finally:
        source.close()


# ---------------------------------------------------------------- partitions

LINUX_GUIDS = {
    "0fc63daf-8483-4772-8e79-3d69d8477de4": "linux",
    "4f68bce3-e8cd-4db1-96e7-fbcaf984b709": "linux",  # x86-64 root (discoverable)
    "e6d6d379-f507-44c2-a23c-238f2a3df928": "lvm",
    "0657fd6d-a4ab-43c4-84e5-0933c84b4f4f": "swap",
    "21686148-6449-6e6f-744e-656564454649": "bios-boot",
    "c12a7328-f81f-11d2-ba4b-00a0c93ec93b": "efi",
}
MBR_TYPES = {0x83: "linux", 0x8E: "lvm", 0x82: "swap", 0xEF: "efi", 0xFD: "raid"}
EXTENDED = (0x05, 0x0F, 0x85)


@dataclass(frozen=True)
class Partition:
    number: int  # 0: a filesystem on the whole disk, no partition table
    start: int  # bytes
    size: int  # bytes
    kind: str  # the table's type: linux, lvm, swap, efi, ... or a hex code / GUID
    bootable: bool
    filesystem: str  # probed: ext2, ext3, ext4, lvm, swap, xfs, btrfs, or unknown


def partitions(source: BlockSource) -> list[Partition]:
    """The partitions of a disk (MBR or GPT), each with its probed filesystem."""
    mbr = source.read(0, SECTOR)
    entries = [struct.unpack_from("<B3xB3xII", mbr, 446 + 16 * i) for i in range(4)]
    if mbr[510:512] != b"\x55\xaa" or not any(e[1] and e[3] for e in entries):
        fs = probe(source, 0)
        return [] if fs == "unknown" else [Partition(0, 0, source.size, "disk", False, fs)]
    if any(e[1] == 0xEE for e in entries):
        return _gpt(source)
    found: list[Partition] = []
    for number, (status, kind, lba, count) in enumerate(entries, start=1):
        if kind == 0 or count == 0:
            continue
        if kind in EXTENDED:
            found += _logical(source, lba)
            continue
        found.append(_partition(source, number, lba, count, kind, bool(status & 0x80)))
    return found


def _partition(
    source: BlockSource, number: int, lba: int, count: int, kind: int, boot: bool
) -> Partition:
    start = lba * SECTOR
    return Partition(
        number, start, count * SECTOR, MBR_TYPES.get(kind, f"{kind:#04x}"), boot,
        probe(source, start),
    )


def _logical(source: BlockSource, extended_lba: int) -> list[Partition]:
    found, ebr_lba, number = [], extended_lba, 5
    for _ in range(128):
        ebr = source.read(ebr_lba * SECTOR, SECTOR)
        if ebr[510:512] != b"\x55\xaa":
            break
        status, kind, lba, count = struct.unpack_from("<B3xB3xII", ebr, 446)
        if kind and count:
            found.append(_partition(source, number, ebr_lba + lba, count, kind, bool(status)))
            number += 1
        _, next_kind, next_lba, _ = struct.unpack_from("<B3xB3xII", ebr, 462)
        if next_kind not in EXTENDED or not next_lba:
            break
        ebr_lba = extended_lba + next_lba
    return found


def _gpt(source: BlockSource) -> list[Partition]:
    header = source.read(SECTOR, SECTOR)
    if header[:8] != b"EFI PART":
        raise ImageUnreadable("protective MBR without a GPT header")
    table_lba, count, entry_size = struct.unpack_from("<QII", header, 72)
    # UEFI: entries are 128 * 2^n bytes; anything else is a damaged table.
    if entry_size < 128 or entry_size > 4096 or entry_size & (entry_size - 1):
        raise ImageUnreadable(f"damaged GPT: partition entries of {entry_size} bytes")
    table = source.read(table_lba * SECTOR, min(count, 256) * entry_size)
    found = []
    for i in range(min(count, 256)):
        entry = table[i * entry_size : (i + 1) * entry_size]
        if entry[:16] == bytes(16):
            continue
        guid = str(uuid.UUID(bytes_le=entry[:16]))
        first, last = struct.unpack_from("<QQ", entry, 32)
        start = first * SECTOR
        found.append(
            Partition(i + 1, start, (last - first + 1) * SECTOR, LINUX_GUIDS.get(guid, guid),
                      False, probe(source, start))
        )
    return found


def probe(source: BlockSource, start: int) -> str:
    """Which filesystem (or volume manager) starts at byte `start`."""
    head = source.read(start, 4096)
    if struct.unpack_from("<H", head, 1024 + 56)[0] == 0xEF53:
        return Ext4.kind_of(head[1024:2048])
    if any(head[s * SECTOR : s * SECTOR + 8] == b"LABELONE" for s in range(4)):
        return "lvm"
    if head[:4] == b"XFSB":
        return "xfs"
    if head[4086:4096] in (b"SWAPSPACE2", b"SWAP-SPACE"):
        return "swap"
    if source.read(start + 0x10040, 8) == b"_BHRfS_M":
        return "btrfs"
    return "unknown"


# ---------------------------------------------------------------- ext2/3/4

S_IFMT, S_IFDIR, S_IFREG, S_IFLNK = 0o170000, 0o040000, 0o100000, 0o120000
INCOMPAT_EXTENTS, INCOMPAT_64BIT, INCOMPAT_FLEX_BG = 0x40, 0x80, 0x200
INCOMPAT_META_BG, INCOMPAT_INLINE_DATA = 0x10, 0x8000
FLAG_EXTENTS, FLAG_INLINE_DATA = 0x80000, 0x10000000
EXTENT_MAGIC = 0xF30A


@dataclass(frozen=True)
class Inode:
    number: int
    mode: int
    uid: int
    gid: int
    size: int
    flags: int
    block: bytes  # i_block, 60 bytes

    @property
    def is_dir(self) -> bool:
        return self.mode & S_IFMT == S_IFDIR

    @property
    def is_file(self) -> bool:
        return self.mode & S_IFMT == S_IFREG

    @property
    def is_symlink(self) -> bool:
        return self.mode & S_IFMT == S_IFLNK


MAX_DIRECTORY = 64 * 1024 * 1024  # a directory of a million entries is ~40 MiB


def _zeros(count: int) -> Iterator[bytes]:
    """A hole's zeros, a MiB at a time."""
    while count > 0:
        piece = ZEROS[: min(count, len(ZEROS))]
        yield piece
        count -= len(piece)


class Ext4:
    """A read-only ext2/3/4 filesystem starting at `offset` of `source`."""

    def __init__(self, source: BlockSource, offset: int) -> None:
        self.source, self.offset = source, offset
        sb = source.read(offset + 1024, 1024)
        if struct.unpack_from("<H", sb, 56)[0] != 0xEF53:
            raise ImageUnreadable("no ext2/3/4 filesystem here")
        self.kind = self.kind_of(sb)
        self.uuid = str(uuid.UUID(bytes=sb[104:120]))
        log_block = struct.unpack_from("<I", sb, 24)[0]
        if log_block > 6:  # ext4 blocks are 1 KiB to 64 KiB
            raise ImageUnreadable(f"damaged ext4 superblock: block size 2^{10 + log_block}")
        self.block_size = 1024 << log_block
        self.first_data_block = struct.unpack_from("<I", sb, 20)[0]
        self.inodes_per_group = struct.unpack_from("<I", sb, 40)[0]
        if not self.inodes_per_group:
            raise ImageUnreadable("damaged ext4 superblock: no inodes per group")
        blocks = struct.unpack_from("<I", sb, 4)[0] | struct.unpack_from("<I", sb, 0x150)[0] << 32
        # No file in this filesystem is larger than the filesystem (or the disk) itself.
        self.max_file = min(blocks * self.block_size, source.size)
        rev = struct.unpack_from("<I", sb, 76)[0]
        self.inode_size = struct.unpack_from("<H", sb, 88)[0] if rev >= 1 else 128
        incompat = struct.unpack_from("<I", sb, 96)[0]
        if incompat & INCOMPAT_META_BG:
            raise ImageUnreadable("ext4 meta_bg layout is not supported by the image reader")
        self.wide = bool(incompat & INCOMPAT_64BIT)
        self.desc_size = struct.unpack_from("<H", sb, 254)[0] if self.wide else 32
        if not 32 <= self.desc_size <= 1024:
            raise ImageUnreadable(f"damaged ext4 superblock: group descriptors of "
                                  f"{self.desc_size} bytes")
        self._tables: dict[int, int] = {}

    @staticmethod
    def kind_of(superblock: bytes) -> str:
        compat, incompat = struct.unpack_from("<II", superblock, 92)
        if incompat & (INCOMPAT_EXTENTS | INCOMPAT_64BIT | INCOMPAT_FLEX_BG):
            return "ext4"
        return "ext3" if compat & 0x4 else "ext2"

    def _read_blocks(self, block: int, count: int = 1) -> bytes:
        return self.source.read(self.offset + block * self.block_size, count * self.block_size)

    def _inode_table(self, group: int) -> int:
        if group not in self._tables:
            at = (self.first_data_block + 1) * self.block_size + group * self.desc_size
            desc = self.source.read(self.offset + at, self.desc_size)
            table = struct.unpack_from("<I", desc, 8)[0]
            if self.wide and self.desc_size >= 64:
                table |= struct.unpack_from("<I", desc, 0x28)[0] << 32
            self._tables[group] = table
        return self._tables[group]

    def inode(self, number: int) -> Inode:
        group, index = divmod(number - 1, self.inodes_per_group)
        at = self._inode_table(group) * self.block_size + index * self.inode_size
        raw = self.source.read(self.offset + at, 128)
        mode, uid, size_lo = struct.unpack_from("<HHI", raw, 0)
        gid = struct.unpack_from("<H", raw, 24)[0]
        flags = struct.unpack_from("<I", raw, 32)[0]
        size_hi = struct.unpack_from("<I", raw, 108)[0]
        uid_hi, gid_hi = struct.unpack_from("<HH", raw, 120)
        return Inode(number, mode, uid | uid_hi << 16, gid | gid_hi << 16,
                     size_lo | size_hi << 32, flags, raw[40:100])

    def _extents(self, node: bytes, level: int = 0) -> Iterator[tuple[int, int, int, bool]]:
        magic, entries, _, depth = struct.unpack_from("<HHHH", node, 0)
        if magic != EXTENT_MAGIC or depth > 5 or level > 5 or 12 + 12 * entries > len(node):
            raise ImageUnreadable("damaged ext4 extent tree")
        for i in range(entries):
            at = 12 + 12 * i
            if depth == 0:
                logical, length, hi, lo = struct.unpack_from("<IHHI", node, at)
                initialized = length <= 32768
                yield logical, lo | hi << 32, length if initialized else length - 32768, initialized
            else:
                _, lo, hi = struct.unpack_from("<IIH", node, at)
                yield from self._extents(self._read_blocks(lo | hi << 32), level + 1)

    def _indirect(self, block: int, level: int, first: int, total: int
                  ) -> Iterator[tuple[int, int, int, bool]]:
        """Runs of an indirect block map whose first logical block is `first`.

        Holes are skipped whole (never walked block by block), so a huge sparse
        file costs nothing; nothing past the file's `total` blocks is read.
        """
        per = self.block_size // 4
        span = per ** (level - 1)
        if block == 0 or first >= total:
            return
        for index, child in enumerate(struct.unpack(f"<{per}I", self._read_blocks(block))):
            logical = first + index * span
            if logical >= total:
                return
            if child and level == 1:
                yield logical, child, 1, True
            elif child:
                yield from self._indirect(child, level - 1, logical, total)

    def _runs(self, inode: Inode) -> Iterator[tuple[int, int, int, bool]]:
        """(logical block, physical block, count, initialized) of a file's data."""
        if inode.flags & FLAG_EXTENTS:
            yield from self._extents(inode.block)
            return
        blocks = struct.unpack("<15I", inode.block)
        total = -(-inode.size // self.block_size)
        for logical, phys in enumerate(blocks[:12]):
            if logical < total and phys:
                yield logical, phys, 1, True
        per, first = self.block_size // 4, 12
        for level in (1, 2, 3):
            yield from self._indirect(blocks[11 + level], level, first, total)
            first += per**level

    def chunks(self, inode: Inode, limit: int | None = None) -> Iterator[bytes]:
        """A file's bytes in order, a run of blocks at a time (holes read as zeros)."""
        if inode.size > self.max_file:
            raise ImageUnreadable(f"damaged ext4: inode {inode.number} claims {inode.size} "
                                  f"bytes, more than the filesystem holds")
        size = inode.size if limit is None else min(inode.size, limit)
        if inode.flags & FLAG_INLINE_DATA:
            if size > 60:
                raise ImageUnreadable("ext4 inline data beyond 60 bytes is not supported")
            yield inode.block[:size]
            return
        done = 0
        for logical, phys, count, initialized in sorted(self._runs(inode)):
            start = logical * self.block_size
            if start >= size:
                break
            if start > done:
                yield from _zeros(start - done)
                done = start
            for step in range(0, count, 256):  # at most 1 MiB at once (4 KiB blocks)
                n = min(256, count - step)
                length = min(n * self.block_size, size - done)
                if length <= 0:
                    break
                data = self._read_blocks(phys + step, n) if initialized else bytes(length)
                yield data[:length]
                done += length
        if done < size:
            yield from _zeros(size - done)

    def entries(self, inode: Inode) -> dict[str, int]:
        """Name -> inode number of a directory (htree directories are read linearly)."""
        if inode.size > MAX_DIRECTORY:
            raise ImageUnreadable(f"damaged ext4: directory inode {inode.number} claims "
                                  f"{inode.size} bytes")
        data = b"".join(self.chunks(inode))
        found: dict[str, int] = {}
        at = 0
        while at + 8 <= len(data):
            number, rec_len, name_len = struct.unpack_from("<IHB", data, at)
            if rec_len < 8:
                break
            if number:
                name = data[at + 8 : at + 8 + name_len].decode("utf-8", "surrogateescape")
                if name not in (".", ".."):
                    found[name] = number
            at += rec_len
        return found

    def readlink_inode(self, inode: Inode) -> str:
        if inode.size < 60 and not inode.flags & FLAG_EXTENTS:
            raw = inode.block[: inode.size]
        else:
            raw = b"".join(self.chunks(inode, 4096))  # PATH_MAX
        return raw.decode("utf-8", "surrogateescape")

    def lookup(self, path: str, follow: bool = True) -> Inode | None:
        """The inode at `path` (absolute symlinks resolve inside this filesystem)."""
        found = self.resolve(path, follow)
        return None if found is None else found[0]

    def realpath(self, path: str, follow: bool = True) -> str | None:
        """`path` with every symlink resolved, or None if it does not exist."""
        found = self.resolve(path, follow)
        return None if found is None else "/" + "/".join(found[1])

    def resolve(self, path: str, follow: bool = True) -> tuple[Inode, list[str]] | None:
        """(inode, canonical path components) of `path`, or None."""
        parts = [p for p in path.split("/") if p]
        current, hops = self.inode(2), 0
        done: list[str] = []
        while parts:
            name = parts.pop(0)
            if name == ".":
                continue
            if name == "..":
                done = done[:-1]
                current = self._walk(done)
                continue
            if not current.is_dir:
                return None
            number = self.entries(current).get(name)
            if number is None:
                return None
            found = self.inode(number)
            if found.is_symlink and (follow or parts):
                hops += 1
                if hops > MAX_SYMLINKS:
                    raise ImageUnreadable(f"too many symlinks resolving {path}")
                target = self.readlink_inode(found)
                parts = [p for p in target.split("/") if p] + parts
                if target.startswith("/"):
                    done = []
                current = self._walk(done)
                continue
            done.append(name)
            current = found
        return current, done

    def _walk(self, names: list[str]) -> Inode:
        current = self.inode(2)
        for name in names:  # already canonical: no symlinks on the way
            number = self.entries(current).get(name)
            if number is None:
                raise ImageUnreadable("a directory vanished while resolving a path")
            current = self.inode(number)
        return current

    def read(self, path: str, limit: int = 1 << 20) -> bytes | None:
        """The first `limit` bytes of a regular file, or None if there is none."""
        inode = self.lookup(path)
        if inode is None or not inode.is_file:
            return None
        return b"".join(self.chunks(inode, limit))

    def text(self, path: str, limit: int = 1 << 20) -> str | None:
        data = self.read(path, limit)
        return None if data is None else data.decode("utf-8", "replace")

    def listdir(self, path: str) -> list[str]:
        inode = self.lookup(path)
        return sorted(self.entries(inode)) if inode is not None and inode.is_dir else []

    def exists(self, path: str, follow: bool = True) -> bool:
        return self.lookup(path, follow) is not None

    def readlink(self, path: str) -> str | None:
        inode = self.lookup(path, follow=False)
        return self.readlink_inode(inode) if inode is not None and inode.is_symlink else None
