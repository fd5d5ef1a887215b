"""The filesystem store: all-or-nothing writes, ranges, sweeping leftovers."""

from __future__ import annotations

import errno
import mmap
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kumo.errors import InsufficientStorage
from kumo.store import filesystem
from kumo.store.filesystem import STAGE_SIZE, FilesystemStore


def test_put_get_delete_roundtrip(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "images")
    # Sizes around the O_DIRECT staging buffer, with an unaligned tail.
    data = os.urandom(STAGE_SIZE + 12345)
    stored = store.put("img", [data[:1000], data[1000 : STAGE_SIZE + 5], data[STAGE_SIZE + 5 :]])
    assert stored.size == len(data)
    assert b"".join(store.get(stored.location)) == data
    assert b"".join(store.get(stored.location, 10, 20)) == data[10:20]
    assert store.locations() == [stored.location]
    store.delete(stored.location)
    store.delete(stored.location)  # already gone: fine
    assert list((tmp_path / "images").iterdir()) == []


def test_aligned_views_and_bytes_mixed(tmp_path: Path) -> None:
    """Page-aligned blocks (written in place), unaligned slices and bytes, in any order."""
    store = FilesystemStore(tmp_path / "images")
    blocks = []
    for _ in range(3):
        block = mmap.mmap(-1, 2 * 1024 * 1024)
        block[:] = os.urandom(len(block))
        blocks.append(block)
    chunks = [
        memoryview(blocks[0]),  # aligned, whole
        memoryview(blocks[1])[:1_000_001],  # aligned start, unaligned length
        memoryview(blocks[2]),  # aligned, but lands after a partial stage
        b"tail" * 3,
        memoryview(blocks[0])[7:5000],  # unaligned start
    ]
    expected = b"".join(bytes(c) for c in chunks)
    stored = store.put("img", chunks)
    assert stored.size == len(expected)
    assert b"".join(store.get(stored.location)) == expected


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "images")

    def broken() -> Iterator[bytes]:
        yield b"a" * 100_000
        raise ConnectionError("client went away")

    with pytest.raises(ConnectionError):
        store.put("img", broken())
    assert list((tmp_path / "images").iterdir()) == []


def test_disk_full_is_insufficient_storage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FilesystemStore(tmp_path / "images")
    real_write = os.write

    def full(fd: int, data: bytes) -> int:
        if len(data) > 10:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(InsufficientStorage, match="no space"):
        store.put("img", [b"x" * (STAGE_SIZE * 2)])
    assert list((tmp_path / "images").iterdir()) == []


def test_sweep_partial_removes_leftovers_only(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path / "images")
    kept = store.put("whole", [b"ok"])
    (tmp_path / "images" / "half.partial").write_bytes(b"half")
    assert store.sweep_partial() == [str(tmp_path / "images" / "half.partial")]
    assert store.locations() == [kept.location]


def _resident(path: Path) -> int:
    """Bytes of `path` in the page cache (util-linux fincore)."""
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--raw", "--output", "RES",
                          str(path)], check=True, capture_output=True, text=True).stdout
    return int(out.strip())


def _uploaded_and_cached(tmp_path: Path, size: int) -> tuple[Path, int]:
    store = FilesystemStore(tmp_path / "images")
    block = mmap.mmap(-1, 8 * 1024 * 1024)  # page-aligned: the O_DIRECT path, as uploads
    block.write(os.urandom(len(block)))
    stored = store.put("img", [memoryview(block)] * (size // len(block)))
    path = tmp_path / "images" / "img"
    deadline = time.monotonic() + 30
    resident = _resident(path)
    while resident < min(size, filesystem.UPLOAD_CACHE_BYTES) and time.monotonic() < deadline:
        time.sleep(0.2)  # the kernel reads the ranges back asynchronously
        resident = _resident(path)
    assert stored.size == size
    return path, resident


def test_fresh_upload_is_in_the_page_cache(tmp_path: Path) -> None:
    """O_DIRECT writes, yet the first download after the upload reads from memory."""
    _, resident = _uploaded_and_cached(tmp_path, 64 * 1024 * 1024)
    assert resident == 64 * 1024 * 1024


def test_an_upload_keeps_only_its_budget_in_the_cache(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filesystem, "UPLOAD_CACHE_BYTES", 16 * 1024 * 1024)
    path, _ = _uploaded_and_cached(tmp_path, 64 * 1024 * 1024)
    time.sleep(1)
    # a page or two of the budget may already be reclaimed under memory pressure (seen in CI:
    # 32 KiB short of 16 MiB); what matters is that the rest of the 64 MiB is not kept
    assert 15 * 1024 * 1024 <= _resident(path) <= 24 * 1024 * 1024
