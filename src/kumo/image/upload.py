"""Image data in: one pass over the stream that hashes, inspects and stores it.

The event loop gathers the request body into large page-aligned blocks and hands
them to a worker thread through a `BlockChannel`. The worker feeds each block to
the format inspector, queues it for md5 and sha512 on two hashing threads (hashlib
releases the GIL on large buffers, so the two hashes run truly in parallel) and
writes it to the store. The store keeps a partial file until everything has passed;
any error (client gone, size mismatch, refused format, disk full) leaves no bytes
behind.

The bytes are copied once in user space: from the socket straight into a block
(`recv_into`), which the hashes read and the store writes with O_DIRECT in place.
A block goes back to the channel's small pool once all three have finished with
it, so memory stays flat and no block is ever faulted in twice.
"""

from __future__ import annotations

import asyncio
import hashlib
import mmap
import os
import queue
import socket
import threading
from collections.abc import Awaitable, Callable, Iterable, Iterator, MutableMapping
from dataclasses import dataclass
from typing import Any, cast

from kumo.diskformat.inspect import StreamInspector
from kumo.errors import BadRequest, PayloadTooLarge
from kumo.store.base import ImageStore

BLOCK_SIZE = 8 * 1024 * 1024
POOL_BLOCKS = 8  # blocks in flight per upload (64 MiB): enough that sha512 never waits
CONSUMERS = 3  # md5, sha512 and the store each read a block once
IMAGE_SIZE_CAP = 1 << 40  # Glance's image_size_cap default: 1 TiB
HASH_ALGO = "sha512"
_DONE = None


Data = bytes | bytearray | memoryview
Recycle = Callable[[memoryview], None]


class _Hasher(threading.Thread):
    """One hash over blocks taken from a small queue (bounded: memory stays flat)."""

    def __init__(self, algorithm: str, recycle: Recycle | None = None) -> None:
        super().__init__(name=f"kumo-{algorithm}", daemon=True)
        self.hash = hashlib.new(algorithm)
        self.recycle = recycle
        # Deeper than the block pool, so a put never blocks the worker on a pooled
        # upload: the slower hash just works through its backlog.
        self.queue: queue.Queue[Data | None] = queue.Queue(maxsize=POOL_BLOCKS + 2)
        self.start()

    def run(self) -> None:
        update, recycle = self.hash.update, self.recycle
        while (block := self.queue.get()) is not _DONE:
            update(block)
            if recycle is not None and isinstance(block, memoryview):
                recycle(block)


class StreamDigest:
    """md5 (Glance's `checksum`) and sha512 (`os_hash_value`) of a stream, in parallel."""

    def __init__(self, recycle: Recycle | None = None) -> None:
        self._md5 = _Hasher("md5", recycle)
        self._sha = _Hasher(HASH_ALGO, recycle)

    def update(self, block: Data) -> None:
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
    blocks: Iterable[Data],
    *,
    disk_format: str,
    container_format: str,
    expected_size: int | None = None,
    inspect: bool = True,
) -> IngestResult:
    """Inspect, hash and store `blocks` as the data of `image_id`; all or nothing.

    `inspect=False` only for data staged for import, which the import inspects itself.
    """
    recycle = blocks.recycle if isinstance(blocks, BlockChannel) else None
    digest = StreamDigest(recycle)
    # Glance inspects bare images only: other containers wrap something else.
    inspector = StreamInspector(disk_format) if inspect and container_format == "bare" else None
    state: dict[str, int | None] = {"size": 0, "virtual_size": None}

    def checked() -> Iterator[Data]:
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
            yield block
            # The store asks for the next block only once it has written this one.
            if recycle is not None and isinstance(block, memoryview):
                recycle(block)
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
        # Stores write any buffer; ImageStore.put's annotation only names bytes.
        stored = store.put(image_id, cast(Iterable[bytes], checked()))
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


class ClientGone(BadRequest):
    """The client stopped sending before the body ended: an expected event, not a bug.

    Nobody reads the 400 it becomes; the service logs one line and the image goes
    back to `queued`.
    """


class BlockChannel:
    """Page-aligned blocks from the event loop to one worker thread, from a small pool.

    The event loop asks for an empty block with `block()`, fills it and `send`s a
    view of it; the worker iterates the views. Each consumer hands a view back with
    `recycle` (from any thread); the block returns to the pool after the last one.
    At most `blocks` blocks exist, which bounds memory and makes the pool the
    backpressure: a reader waits for a free block, never for a queue slot.
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        blocks: int = POOL_BLOCKS,
        block_size: int = BLOCK_SIZE,
    ) -> None:
        self._loop = loop
        self.block_size = block_size
        self._limit = blocks
        self._made = 0
        self._queue: asyncio.Queue[memoryview | BaseException | None] = asyncio.Queue()
        self._free: asyncio.Queue[mmap.mmap] = asyncio.Queue()
        self._readers: dict[int, int] = {}  # id(block) -> consumers still to finish
        self._lock = threading.Lock()

    async def block(self, worker: asyncio.Future[Any]) -> mmap.mmap | None:
        """An empty block to fill; None if the worker ended first (it will take no more)."""
        if not self._free.empty():
            return self._free.get_nowait()
        if self._made < self._limit and not worker.done():
            self._made += 1
            return mmap.mmap(-1, self.block_size)  # anonymous: page-aligned for O_DIRECT
        getter = asyncio.ensure_future(self._free.get())
        done, _ = await asyncio.wait({getter, worker}, return_when=asyncio.FIRST_COMPLETED)
        if getter in done:
            return getter.result()
        getter.cancel()
        return None

    def send(self, block: mmap.mmap, length: int) -> None:
        """Queue the first `length` bytes of `block` for the worker."""
        with self._lock:
            self._readers[id(block)] = CONSUMERS
        self._queue.put_nowait(memoryview(block)[:length])

    def end(self, error: BaseException | None = None) -> None:
        """No more blocks: the body ended (None) or failed (`error`, raised in the worker)."""
        self._queue.put_nowait(error)

    def recycle(self, view: memoryview) -> None:
        """One consumer is done with `view` (any thread)."""
        block = view.obj
        assert isinstance(block, mmap.mmap)
        with self._lock:
            left = self._readers[id(block)] - 1
            self._readers[id(block)] = left
        if left == 0:
            self._loop.call_soon_threadsafe(self._free.put_nowait, block)

    def __iter__(self) -> Iterator[memoryview]:
        """Runs on the worker thread."""
        while True:
            item = asyncio.run_coroutine_threadsafe(self._queue.get(), self._loop).result()
            if item is None:
                return
            if isinstance(item, BaseException):
                raise item
            yield item


Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]


async def pump_body(
    receive: Receive,
    content_length: int | None,
    channel: BlockChannel,
    worker: asyncio.Future[Any],
) -> None:
    """Feed the request body to `channel` until it ends, the client goes, or the worker stops.

    Once the worker has refused the data, the rest of the body is read and dropped,
    so the client gets the 4xx instead of a broken pipe.
    """
    cycle = _uvicorn_cycle(receive, content_length)
    if cycle is not None and content_length is not None:
        await _pump_socket(cycle, content_length, channel, worker)
    else:
        await _pump_messages(receive, channel, worker)


async def _pump_messages(
    receive: Receive, channel: BlockChannel, worker: asyncio.Future[Any]
) -> None:
    """Any ASGI server: copy the body messages into blocks."""
    block = await channel.block(worker)
    fill = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            if block is not None:
                channel.end(ClientGone("the client disconnected before the upload ended"))
            return
        data = memoryview(message.get("body", b""))
        while block is not None and data:
            take = min(len(data), channel.block_size - fill)
            block[fill : fill + take] = data[:take]
            fill += take
            data = data[take:]
            if fill == channel.block_size:
                channel.send(block, fill)
                block, fill = await channel.block(worker), 0
        if not message.get("more_body", False):
            if block is not None:
                if fill:
                    channel.send(block, fill)
                channel.end()
            return


def _uvicorn_cycle(receive: Receive, content_length: int | None) -> Any:
    """uvicorn's httptools request cycle behind `receive`, if the body can be read directly.

    Going through ASGI messages costs a Python round trip and four copies per
    256 KiB; reading the socket directly costs one copy per several MiB. Only a
    sized body still to come qualifies; anything unexpected keeps the ASGI path.
    """
    if content_length is None:
        return None
    try:
        from uvicorn.protocols.http.httptools_impl import RequestResponseCycle
    except ImportError:  # pragma: no cover - uvicorn is a dependency
        return None
    cycle = getattr(receive, "__self__", None)
    if not isinstance(cycle, RequestResponseCycle):
        return None
    needed = ("transport", "flow", "body", "more_body", "keep_alive", "disconnected")
    if not all(hasattr(cycle, name) for name in needed):
        return None
    if cycle.disconnected or cycle.response_complete or not cycle.more_body:
        return None
    if len(cycle.body) > content_length or cycle.transport.get_extra_info("socket") is None:
        return None
    if cycle.transport.get_extra_info("sslcontext") is not None:
        return None  # the socket carries TLS records, not the body
    return cycle


async def _pump_socket(
    cycle: Any, content_length: int, channel: BlockChannel, worker: asyncio.Future[Any]
) -> None:
    """Read the rest of the body from the socket into blocks, bypassing the HTTP parser.

    The parser never sees these bytes, so the connection closes after the
    response (keep-alive clients simply reconnect).
    """
    loop = asyncio.get_running_loop()
    cycle.flow.pause_reading()  # from here on the parser gets nothing more
    cycle.keep_alive = False
    if getattr(cycle, "waiting_for_100_continue", False) and not cycle.transport.is_closing():
        cycle.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        cycle.waiting_for_100_continue = False
    early = bytes(cycle.body)  # what arrived with the headers
    cycle.body = bytearray()
    remaining = content_length - len(early)
    # A second descriptor for the same socket: the transport keeps its own (paused),
    # the event loop watches this one for the body.
    sock = socket.socket(fileno=os.dup(cycle.transport.get_extra_info("socket").fileno()))
    sock.setblocking(False)
    try:
        block = await channel.block(worker)
        fill = 0
        if block is not None and early:
            block[: len(early)] = early
            fill = len(early)
        scratch: memoryview | None = None
        while remaining:
            if block is not None:
                view = memoryview(block)[fill : fill + min(remaining, channel.block_size - fill)]
            else:
                scratch = scratch or memoryview(bytearray(1 << 20))
                view = scratch[: min(remaining, len(scratch))]
            try:
                got = await loop.sock_recv_into(sock, view)
            except OSError:
                got = 0
            if not got:
                if block is not None:
                    channel.end(ClientGone("the client disconnected before the upload ended"))
                return
            remaining -= got
            if block is not None:
                fill += got
                if fill == channel.block_size:
                    channel.send(block, fill)
                    block, fill = await channel.block(worker), 0
        if block is not None:
            if fill:
                channel.send(block, fill)
            channel.end()
    finally:
        sock.close()
        cycle.flow.resume_reading()  # uvicorn sees the close of a client that went away
