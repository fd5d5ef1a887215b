"""Image bytes as files in one folder: `<dir>/<image id>`.

Writes go to `<id>.partial`, are fsynced and renamed into place, so a crash never
leaves a file that looks whole. Where the filesystem allows it the data is written
with O_DIRECT: on a VM the kernel's page-cache copy of a fresh gigabyte costs more
CPU than hashing it, and an upload is meant to cost little more than one sha512
pass. Chunks that are already page-aligned (the upload's pooled blocks) are written
in place; anything else goes through a page-aligned staging buffer.

O_DIRECT leaves nothing in the page cache, yet compute nodes download an image right
after it is uploaded. So the first `UPLOAD_CACHE_BYTES` of each upload are read back
into the page cache behind the writes (`posix_fadvise(WILLNEED)` on each range just
written, from a thread of its own: the kernel reads them while the upload goes on).
An upload therefore adds at most that much to the page cache, whatever its size,
and the rest of the cache is not pushed out by a large image.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import mmap
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from urllib.parse import urlparse

from kumo.errors import InsufficientStorage, NotFound
from kumo.store.base import ImageStore, StoredObject

PARTIAL_SUFFIX = ".partial"
READ_CHUNK = 4 * 1024 * 1024
STAGE_SIZE = 8 * 1024 * 1024  # a multiple of every block size O_DIRECT may demand
O_DIRECT = getattr(os, "O_DIRECT", 0)
ALIGN = mmap.PAGESIZE  # satisfies every logical block size O_DIRECT may demand


def _memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 8 << 30


# How much of each upload is kept in the page cache: an eighth of RAM, at most 4 GiB.
UPLOAD_CACHE_BYTES = min(_memory_bytes() // 8, 4 << 30)


class _CacheWarmer:
    """One thread that asks the kernel to read just-written ranges into the page cache."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[int, int, int]] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def warm(self, fd: int, offset: int, length: int) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="kumo-cache-warmer",
                                                daemon=True)
                self._thread.start()
        self._queue.put((fd, offset, length))

    def release(self, fd: int) -> None:
        """Close `fd` once every range queued for it was handed to the kernel."""
        self._queue.put((fd, -1, 0))

    def _run(self) -> None:
        while True:
            fd, offset, length = self._queue.get()
            if offset < 0:
                os.close(fd)
                continue
            with contextlib.suppress(OSError):
                os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)


_WARMER = _CacheWarmer()
Chunk = bytes | bytearray | memoryview


def _aligned_prefix(data: memoryview) -> int:
    """How many leading bytes of `data` O_DIRECT can take in place (0: must be staged)."""
    if data.readonly or not data.c_contiguous or len(data) < ALIGN:
        return 0  # ctypes can only take the address of a writable buffer
    address = ctypes.addressof(ctypes.c_char.from_buffer(data))
    return 0 if address % ALIGN else len(data) - len(data) % ALIGN


class _Writer:
    """Writes chunks to an open file, through O_DIRECT when the filesystem takes it."""

    def __init__(self, path: Path) -> None:
        self.direct = bool(O_DIRECT)
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
        try:
            self.fd = os.open(path, flags | (O_DIRECT if self.direct else 0), 0o644)
        except OSError as exc:
            if exc.errno != errno.EINVAL:
                raise
            self.direct = False  # tmpfs and friends refuse O_DIRECT
            self.fd = os.open(path, flags, 0o644)
        self.stage = mmap.mmap(-1, STAGE_SIZE) if self.direct else None
        self.view = memoryview(self.stage) if self.stage is not None else None
        self.fill = 0
        self.size = 0
        self.offset = 0  # of the file: what went out to it so far
        # Written data bypasses the cache only with O_DIRECT: read it back (bounded).
        self.warm_fd = os.dup(self.fd) if self.direct and UPLOAD_CACHE_BYTES else None

    def write(self, chunk: Chunk) -> None:
        self.size += len(chunk)
        if self.view is None:
            self._write_all(memoryview(chunk))
            return
        data = memoryview(chunk).cast("B")
        if self.fill == 0 and self.direct and (direct := _aligned_prefix(data)):
            # The file offset is aligned too: everything before went out in whole stages
            # or aligned prefixes.
            self._write_all(data[:direct])
            data = data[direct:]
        while data:
            take = min(len(data), STAGE_SIZE - self.fill)
            self.view[self.fill : self.fill + take] = data[:take]
            self.fill += take
            data = data[take:]
            if self.fill == STAGE_SIZE:
                self._flush_stage()

    def _flush_stage(self) -> None:
        assert self.view is not None
        self._write_all(self.view[: self.fill])
        self.fill = 0

    def _drop_direct(self) -> None:
        flags = fcntl.fcntl(self.fd, fcntl.F_GETFL)
        fcntl.fcntl(self.fd, fcntl.F_SETFL, flags & ~O_DIRECT)
        self.direct = False

    def _write_all(self, data: memoryview) -> None:
        while data:
            try:
                written = os.write(self.fd, data)
            except OSError as exc:
                if exc.errno != errno.EINVAL or not self.direct:
                    raise
                # The filesystem took the O_DIRECT open but not the write (or a short
                # write left the offset unaligned): go on through the page cache.
                self._drop_direct()
                continue
            if self.warm_fd is not None and self.offset < UPLOAD_CACHE_BYTES:
                _WARMER.warm(self.warm_fd, self.offset, written)
            self.offset += written
            data = data[written:]

    def finish(self) -> None:
        """Write the unaligned tail without O_DIRECT, then fsync."""
        if self.view is not None and self.fill:
            if self.direct:
                self._drop_direct()
            self._write_all(self.view[: self.fill])
            self.fill = 0
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)
        if self.warm_fd is not None:
            _WARMER.release(self.warm_fd)
        # After an error, slices of the buffer may live on in the traceback; the
        # garbage collector unmaps it then.
        with contextlib.suppress(BufferError):
            if self.view is not None:
                self.view.release()
            if self.stage is not None:
                self.stage.close()


class FilesystemStore(ImageStore):
    scheme = "file"

    def __init__(self, root: Path) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, location: str) -> Path:
        parsed = urlparse(location)
        path = Path(parsed.path)
        if parsed.scheme != self.scheme or path.parent != self.root:
            raise NotFound(f"image data location {location!r} is not in this store")
        return path

    def put(self, image_id: str, chunks: Iterable[Chunk]) -> StoredObject:
        final = self.root / image_id
        partial = final.with_name(final.name + PARTIAL_SUFFIX)
        try:
            writer = _Writer(partial)
            try:
                for chunk in chunks:
                    writer.write(chunk)
                writer.finish()
            finally:
                writer.close()
            os.replace(partial, final)
            dir_fd = os.open(self.root, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except BaseException as exc:
            partial.unlink(missing_ok=True)
            if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise InsufficientStorage(
                    f"no space left in {self.root} while storing image {image_id}"
                ) from exc
            raise
        return StoredObject(location=final.as_uri(), size=writer.size)

    def get(self, location: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._path(location)
        try:
            handle = open(path, "rb", buffering=0)  # noqa: SIM115 - closed by the generator
        except FileNotFoundError:
            raise NotFound(f"image data is missing from the store: {path}") from None

        def chunks() -> Iterator[bytes]:
            with handle:
                handle.seek(start)
                remaining = None if end is None else end - start
                while remaining is None or remaining > 0:
                    want = READ_CHUNK if remaining is None else min(READ_CHUNK, remaining)
                    chunk = handle.read(want)
                    if not chunk:
                        return
                    if remaining is not None:
                        remaining -= len(chunk)
                    yield chunk

        return chunks()

    def delete(self, location: str) -> None:
        self._path(location).unlink(missing_ok=True)

    @contextlib.contextmanager
    def local_file(self, location: str, scratch: Path) -> Iterator[Path]:
        yield self._path(location)

    def locations(self) -> list[str]:
        return [
            path.as_uri()
            for path in sorted(self.root.iterdir())
            if path.is_file() and not path.name.endswith(PARTIAL_SUFFIX)
        ]

    def sweep_partial(self, busy: Callable[[str], bool] = lambda _id: False) -> list[str]:
        swept = []
        for leftover in self.root.glob("*" + PARTIAL_SUFFIX):
            if busy(leftover.name.removesuffix(PARTIAL_SUFFIX)):
                continue
            leftover.unlink(missing_ok=True)
            swept.append(str(leftover))
        return swept
