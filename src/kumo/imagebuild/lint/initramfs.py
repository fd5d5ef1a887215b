"""List an initramfs (cpio newc, possibly several archives, compressed or not), streaming.

Debian's initramfs-tools writes an uncompressed early archive (CPU microcode) and
then a zstd (or gzip, xz, lz4 ...) compressed main archive; the kernel reads them
back to back. We keep every name and the text of small scripts, nothing else.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import partial
from typing import BinaryIO, Protocol, cast

import zstandard

from kumo.imagebuild.reader import ImageUnreadable

SCRIPT_LIMIT = 64 * 1024
# Real initramfs images expand to a few hundred MiB at most; a small file that
# expands past this is a decompression bomb (or garbage), not something to walk.
MAX_EXPANDED = 1024 * 1024 * 1024


class Readable(Protocol):
    def read(self, size: int = -1, /) -> bytes: ...


@dataclass
class Initramfs:
    names: set[str] = field(default_factory=set)  # paths without a leading "/"
    scripts: dict[str, str] = field(default_factory=dict)  # small "#!" files

    def has_module(self, module: str) -> bool:
        """True if a kernel module file `module.ko` (maybe compressed) is inside."""
        stem = module + ".ko"
        return any(n.rsplit("/", 1)[-1].split(".ko")[0] + ".ko" == stem for n in self.names
                   if ".ko" in n)


class ChunkStream:
    """A read()-able stream over an iterator of byte chunks (at most MAX_EXPANDED bytes)."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks: Iterator[bytes] = iter(chunks)
        self.buffer = b""
        self.total = 0

    def read(self, size: int = -1, /) -> bytes:
        while size < 0 or len(self.buffer) < size:
            chunk = next(self.chunks, None)
            if chunk is None:
                break
            self.total += len(chunk)
            if self.total > MAX_EXPANDED:
                raise ImageUnreadable(f"damaged initramfs: it expands past {MAX_EXPANDED} bytes")
            self.buffer += chunk
        if size < 0:
            size = len(self.buffer)
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def peek(self, size: int) -> bytes:
        data = self.read(size)
        self.buffer = data + self.buffer
        return data


def _exact(stream: Readable, size: int) -> bytes:
    parts, left = [], size
    while left > 0:
        part = stream.read(left)
        if not part:
            break
        parts.append(part)
        left -= len(part)
    return b"".join(parts)


def _skip(stream: Readable, size: int) -> None:
    while size > 0:
        part = stream.read(min(size, 1 << 20))
        if not part:
            return
        size -= len(part)


def _archives(stream: Readable, found: Initramfs, aligned: int = 0) -> int:
    """Parse newc archives until the stream ends or stops being cpio; bytes consumed."""
    at = aligned
    while True:
        head = _exact(stream, 110)
        if len(head) < 110:
            return at + len(head)
        if head[:6] not in (b"070701", b"070702"):
            raise _NotCpio(head, at)
        size = int(head[54:62], 16)
        name_size = int(head[94:102], 16)
        name_raw = _exact(stream, name_size + (-(110 + name_size) % 4))
        name = name_raw[: name_size - 1].decode("utf-8", "replace").lstrip("./")
        at += 110 + len(name_raw)
        padded = size + (-size % 4)
        if name == "TRAILER!!!":
            return at
        if name:
            found.names.add(name)
        if 0 < size <= SCRIPT_LIMIT:
            body = _exact(stream, padded)
            if body.startswith(b"#!"):
                found.scripts[name] = body[:size].decode("utf-8", "replace")
        else:
            _skip(stream, padded)
        at += padded


class _NotCpio(Exception):
    def __init__(self, head: bytes, at: int) -> None:
        self.head, self.at = head, at


def _decompressor(chunks: ChunkStream, magic: bytes) -> Readable | None:
    stream = cast(BinaryIO, chunks)  # ChunkStream has the read() these need
    if magic.startswith(b"\x1f\x8b"):
        return gzip.GzipFile(fileobj=stream)
    if magic.startswith(b"\x28\xb5\x2f\xfd"):
        return zstandard.ZstdDecompressor().stream_reader(stream, read_across_frames=True)
    if magic.startswith(b"\xfd7zXZ\x00") or magic.startswith(b"\x5d\x00\x00"):
        return lzma.LZMAFile(stream)
    if magic.startswith(b"BZh"):
        return bz2.BZ2File(stream)
    return None


def read_initramfs(chunks: Iterable[bytes]) -> Initramfs:
    """Names and small scripts of every archive in an initramfs image."""
    found = Initramfs()
    try:
        _parse(ChunkStream(chunks), found)
    except (_NotCpio, OSError, EOFError, ValueError, lzma.LZMAError, zlib.error,
            zstandard.ZstdError) as exc:
        # ValueError: a cpio header whose sizes are not hex.
        raise ImageUnreadable(f"damaged initramfs: {exc or type(exc).__name__}") from None
    return found


def _parse(stream: ChunkStream, found: Initramfs) -> None:
    while True:
        # Archives are padded with zeros (to 4 or 512 bytes) before the next one.
        while True:
            head = stream.peek(512)
            if not head:
                return
            stripped = head.lstrip(b"\0")
            stream.read(len(head) - len(stripped))
            if stripped:
                break
        magic = stream.peek(6)
        if magic in (b"070701", b"070702"):
            _archives(stream, found)
            continue
        inner = _decompressor(stream, magic)
        if inner is None:
            if magic.startswith(b"\x02\x21\x4c\x18"):
                raise ImageUnreadable("lz4-compressed initramfs cannot be read")
            raise ImageUnreadable("initramfs is neither cpio nor a known compression")
        # A compressed archive runs to the end of the file.
        _parse(ChunkStream(iter(partial(inner.read, 1 << 20), b"")), found)
        return
