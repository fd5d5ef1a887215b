"""Image data in: one pass over the stream that hashes, inspects and stores it.

The event loop gathers the request body into large blocks and hands them to a
worker thread through a `BlockChannel`. The worker feeds each block to the format
inspector, queues it for md5 and sha512 on two hashing threads (hashlib releases
the GIL on large buffers, so the two hashes run truly in parallel) and writes it to
the store. The store keeps a partial file until everything has passed; any error
(client gone, size mismatch, refused format, disk full) leaves no bytes behind.
"""

from __future__ import annotations

import asyncio
import hashlib
import queue
import threading
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from kumo.diskformat.inspect import StreamInspector
from kumo.errors import BadRequest, PayloadTooLarge
from kumo.store.base import ImageStore

BLOCK_SIZE = 8 * 1024 * 1024
IMAGE_SIZE_CAP = 1 << 40  # Glance's image_size_cap default: 1 TiB
HASH_ALGO = "sha512"
_DONE = None


class _Hasher(threading.Thread):
    """One hash over blocks taken from a small queue (bounded: memory stays flat)."""

    def __init__(self, algorithm: str) -> None:
        super().__init__(name=f"kumo-{algorithm}", daemon=True)
        self.hash = hashlib.new(algorithm)
        self.queue: queue.Queue[bytes | bytearray | None] = queue.Queue(maxsize=6)
        self.start()

    def run(self) -> None:
        while (block := self.queue.get()) is not _DONE:
            self.hash.update(block)


class StreamDigest:
    """md5 (Glance's `checksum`) and sha512 (`os_hash_value`) of a stream, in parallel."""

    def __init__(self) -> None:
        self._md5 = _Hasher("md5")
        self._sha = _Hasher(HASH_ALGO)

    def update(self, block: bytes | bytearray) -> None:
        self._md5.queue.put(block)
        self._sha.queue.put(block)

    def finish(self) -> tuple[str, str]:
        """(md5 hex, sha512 hex) once both threads have hashed every block."""
        for worker in (self._md5, self._sha):
            worker.queue.put(_DONE)
            worker.join()
        return self._md5.hash.hexdigest(), self._sha.hash.hexdigest()

    def abort(self) -> None:
        for worker in (self._md5, self._sha):
            # Drain so a blocked put can never wedge the thread, then stop it.
            while True:
                try:
                    worker.queue.get_nowait()
                except queue.Empty:
                    break
            worker.queue.put(_DONE)


@dataclass(frozen=True)
class IngestResult:
    location: str
    size: int
    checksum: str
    os_hash_algo: str
    os_hash_value: str
    virtual_size: int | None


def ingest(
    store: ImageStore,
    image_id: str,
    blocks: Iterable[bytes | bytearray],
    *,
    disk_format: str,
    container_format: str,
    expected_size: int | None = None,
) -> IngestResult:
    """Inspect, hash and store `blocks` as the data of `image_id`; all or nothing."""
    digest = StreamDigest()
    # Glance inspects bare images only: other containers wrap something else.
    inspector = StreamInspector(disk_format) if container_format == "bare" else None
    state: dict[str, int | None] = {"size": 0, "virtual_size": None}

    def checked() -> Iterator[bytes]:
        size = 0
        for block in blocks:
            if not block:
                continue
            size += len(block)
            if expected_size is not None and size > expected_size:
                raise BadRequest(
                    f"Image data is larger than the x-openstack-image-size of {expected_size}"
                )
            if size > IMAGE_SIZE_CAP:
                raise PayloadTooLarge(f"Image exceeds the storage quota of {IMAGE_SIZE_CAP} bytes")
            if inspector is not None:
                inspector.feed(block)
            digest.update(block)
            yield block  # type: ignore[misc]
        if expected_size is not None and size != expected_size:
            raise BadRequest(
                f"Image data is {size} bytes but x-openstack-image-size said {expected_size}"
            )
        state["size"] = size
        if inspector is not None:
            # Raising here, before the store renames the file, leaves no bytes behind.
            state["virtual_size"] = inspector.verdict().virtual_size
        elif disk_format == "raw":
            state["virtual_size"] = size

    try:
        stored = store.put(image_id, checked())
    except BaseException:
        digest.abort()
        raise
    md5, sha = digest.finish()
    return IngestResult(
        location=stored.location,
        size=stored.size,
        checksum=md5,
        os_hash_algo=HASH_ALGO,
        os_hash_value=sha,
        virtual_size=state["virtual_size"],
    )


def file_blocks(path: str, block_size: int = BLOCK_SIZE) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as handle:
        while block := handle.read(block_size):
            yield block


class ClientGone(Exception):
    """The client stopped sending before the body ended."""


class BlockChannel:
    """Blocks from the event loop to one worker thread, at most `depth` in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop, depth: int = 4) -> None:
        self._loop = loop
        self._queue: asyncio.Queue[bytes | bytearray | BaseException | None] = asyncio.Queue(depth)

    async def put(
        self, item: bytes | bytearray | BaseException | None, worker: asyncio.Future[Any]
    ) -> bool:
        """Queue `item`; False if the worker ended first (it will take no more)."""
        if not self._queue.full():
            self._queue.put_nowait(item)
            return True
        putter = asyncio.ensure_future(self._queue.put(item))
        done, _ = await asyncio.wait({putter, worker}, return_when=asyncio.FIRST_COMPLETED)
        if putter in done:
            return True
        putter.cancel()
        return False

    def __iter__(self) -> Iterator[bytes | bytearray]:
        """Runs on the worker thread."""
        while True:
            item = asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop).result()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


async def coalesce(
    stream: AsyncIterator[bytes], block_size: int = BLOCK_SIZE
) -> AsyncIterator[bytearray]:
    """Gather the small chunks a socket delivers into blocks of `block_size`."""
    buffer = bytearray()
    async for chunk in stream:
        if not chunk:
            continue
        buffer += chunk
        if len(buffer) >= block_size:
            yield buffer
            buffer = bytearray()
    if buffer:
        yield buffer
