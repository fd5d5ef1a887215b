"""The Swift and S3 stores against a real one-replica Swift (S3 through its s3api).

Each test gets a container or bucket of its own in the session's Swift.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator

import pytest
import swiftclient

from kumo.config import Settings, StoreSettings
from kumo.errors import NotFound
from kumo.store import build_store
from kumo.store.base import ImageStore
from kumo.store.s3 import S3Store
from kumo.store.swift import SwiftStore
from tests.swift import KEY, USER, SwiftCluster

MIB = 1024 * 1024


def store_settings(kind: str, swift: SwiftCluster) -> StoreSettings:
    name = f"kumo-{uuid.uuid4().hex[:12]}"
    return StoreSettings(
        default_store=kind, swift_store_auth_address=swift.auth_url,
        swift_store_auth_version="1", swift_store_user=USER, swift_store_key=KEY,
        swift_store_container=name, swift_store_large_object_chunk_size=1,
        s3_store_host=swift.url, s3_store_access_key=USER, s3_store_secret_key=KEY,
        s3_store_bucket=name, s3_store_large_object_chunk_size=5)


@pytest.fixture(params=["swift", "s3"])
def store(request: pytest.FixtureRequest, swift: SwiftCluster) -> ImageStore:
    settings = store_settings(request.param, swift)
    return SwiftStore(settings) if request.param == "swift" else S3Store(settings)


def blocks(data: bytes, size: int = 300_000) -> Iterator[memoryview]:
    view = memoryview(data)
    for offset in range(0, len(data), size):
        yield view[offset : offset + size]


def test_round_trip_in_segments_or_parts_with_ranges(store: ImageStore) -> None:
    data = os.urandom(12 * MIB + 12345)  # several segments (1 MiB) / parts (5 MiB)
    stored = store.put("img-1", blocks(data))
    assert stored.size == len(data)
    place = store.container if isinstance(store, SwiftStore) else store.bucket  # type: ignore[attr-defined]
    assert stored.location == f"{store.scheme}://{place}/img-1"
    assert hashlib.sha256(b"".join(store.get(stored.location))).digest() == \
        hashlib.sha256(data).digest()
    assert b"".join(store.get(stored.location, 5 * MIB - 3, 5 * MIB + 7)) == \
        data[5 * MIB - 3 : 5 * MIB + 7]
    assert b"".join(store.get(stored.location, len(data) - 10)) == data[-10:]
    assert store.locations() == [stored.location]
    assert store.image_id_of(stored.location) == "img-1"
    store.delete(stored.location)
    store.delete(stored.location)  # already gone: not an error
    assert store.locations() == []
    with pytest.raises(NotFound):
        b"".join(store.get(stored.location))
    assert store.sweep_partial() == []  # the delete took the segments / parts with it


def test_small_and_empty_images(store: ImageStore) -> None:
    small = store.put("small", [b"hello ", b"world"])
    assert small.size == 11 and b"".join(store.get(small.location)) == b"hello world"
    empty = store.put("empty", iter(()))
    assert empty.size == 0 and b"".join(store.get(empty.location)) == b""
    assert sorted(store.locations()) == sorted([small.location, empty.location])


class Interrupted(Exception):
    pass


def test_a_stream_that_fails_leaves_nothing_that_looks_whole(store: ImageStore) -> None:
    def failing() -> Iterator[bytes]:
        yield from blocks(os.urandom(7 * MIB))
        raise Interrupted  # the client went away, or the inspector refused the image

    with pytest.raises(Interrupted):
        store.put("half", failing())
    assert store.locations() == []
    assert store.sweep_partial() == []  # and no segments or parts are left either


def test_sweep_removes_what_a_crash_left_unless_an_upload_is_alive(
        swift: SwiftCluster) -> None:
    # Swift: segments without a manifest, as a kill -9 between them leaves.
    settings = store_settings("swift", swift)
    store = SwiftStore(settings)
    store.put("whole", blocks(os.urandom(2 * MIB)))
    conn = swiftclient.Connection(authurl=swift.auth_url, user=USER, key=KEY)
    for image_id in ("dead", "alive"):
        conn.put_object(store.segments, f"{image_id}/00000000", contents=b"x" * 100)
    swept = store.sweep_partial(busy=lambda image_id: image_id == "alive")
    assert swept == [f"swift://{store.segments}/dead/00000000"]
    left = sorted(o["name"] for o in conn.get_container(store.segments)[1])
    assert left == ["alive/00000000", "whole/00000000", "whole/00000001"]
    # S3: a multipart upload never completed.
    s3 = S3Store(store_settings("s3", swift))
    s3._ensure_bucket()
    for key in ("dead", "alive"):
        upload = s3.client.create_multipart_upload(Bucket=s3.bucket, Key=key)
        s3.client.upload_part(Bucket=s3.bucket, Key=key, UploadId=upload["UploadId"],
                              PartNumber=1, Body=b"y" * 100)
    assert [s.split("?")[0] for s in s3.sweep_partial(busy=lambda k: k == "alive")] == \
        [f"s3://{s3.bucket}/dead"]
    uploads = s3.client.list_multipart_uploads(Bucket=s3.bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == ["alive"]


def test_build_store_writes_to_the_configured_one_and_still_reads_files(
        swift: SwiftCluster, tmp_path: object) -> None:
    from pathlib import Path

    settings = Settings(data_dir=Path(str(tmp_path)))
    old = build_store(settings).put("old", [b"from the filesystem"])
    settings.store = store_settings("swift", swift)
    stores = build_store(settings)
    new = stores.put("new", [b"in swift"])
    assert new.location.startswith("swift://")
    assert b"".join(stores.get(old.location)) == b"from the filesystem"
    assert b"".join(stores.get(new.location)) == b"in swift"
    stores.delete(old.location)
    assert not (Path(str(tmp_path)) / "images" / "old").exists()
