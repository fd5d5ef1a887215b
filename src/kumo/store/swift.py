"""Image bytes in OpenStack Swift (python-swiftclient), as Static Large Objects.

An image is written as segments `<image_id>/<n>` of at most
`swift_store_large_object_chunk_size` MiB in the container `<container>_segments`, each
streamed as it arrives (a segment is never held in memory) with its MD5 checked
against the ETag Swift answers, then a manifest `<image_id>` in `<container>`
(`?multipart-manifest=put`). The manifest is the commit: until it exists no image
object exists, so a crash mid-upload leaves only segments without a manifest, which
`sweep_partial` removes. Reads stream the manifest (Swift joins the segments and
honours Range); deleting the manifest with `?multipart-manifest=delete` deletes the
segments too. An empty image is one empty plain object (SLO needs a segment).

Locations are `swift://<container>/<image_id>`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from swiftclient import client as swift
from swiftclient.exceptions import ClientException

from kumo.config import StoreSettings
from kumo.errors import KumoError, NotFound, ServiceUnavailable
from kumo.store.base import ImageStore, StoredObject

READ_CHUNK = 4 * 1024 * 1024
MIB = 1024 * 1024
Chunk = bytes | bytearray | memoryview


class _Segment:
    """Feeds at most `limit` bytes of `source` to one PUT, hashing what it sends."""

    def __init__(self, source: Iterator[Chunk], carry: memoryview | None, limit: int) -> None:
        self.source, self.carry, self.limit = source, carry, limit
        self.md5 = hashlib.md5(usedforsecurity=False)
        self.size = 0
        self.exhausted = False

    def __iter__(self) -> Iterator[memoryview]:
        while self.size < self.limit:
            if self.carry is None:
                try:
                    self.carry = memoryview(next(self.source)).cast("B")
                except StopIteration:
                    self.exhausted = True
                    return
            piece = self.carry[: self.limit - self.size]
            rest = self.carry[len(piece):]
            self.carry = rest if len(rest) else None
            if not piece:
                continue
            self.md5.update(piece)
            self.size += len(piece)
            yield piece

    def peek_end(self) -> None:
        """After a full segment: is there anything left? (sets `exhausted`)"""
        if self.carry is None:
            try:
                self.carry = memoryview(next(self.source)).cast("B")
            except StopIteration:
                self.exhausted = True


class SwiftStore(ImageStore):
    scheme = "swift"

    def __init__(self, settings: StoreSettings,
                 connect: Callable[..., swift.Connection] = swift.Connection) -> None:
        self.settings = settings
        self.container = settings.swift_store_container
        self.segments = f"{self.container}_segments"
        self.segment_size = settings.swift_store_large_object_chunk_size * MIB
        self._connect = connect
        self._auth: tuple[str, str] | None = None  # (storage url, token), shared by threads
        self._guard = threading.Lock()
        self._ready = False

    # -- connections -----------------------------------------------------------

    def _conn(self) -> swift.Connection:
        """A connection for this call (swiftclient's are not thread-safe); the token is
        reused, and swiftclient authenticates again by itself when it expires."""
        s = self.settings
        user, options = s.swift_store_user, {}
        if s.swift_store_auth_version == "3":
            project, _, user = user.partition(":")
            options = {"project_name": project, "user_domain_name": "Default",
                       "project_domain_name": "Default"}
        url, token = self._auth or (None, None)
        conn = self._connect(authurl=s.swift_store_auth_address, user=user,
                             key=s.swift_store_key, auth_version=s.swift_store_auth_version,
                             os_options=options, preauthurl=url, preauthtoken=token,
                             retries=2, timeout=60)
        if self._auth is None:
            try:
                self._auth = conn.get_auth()
            except ClientException as exc:
                raise ServiceUnavailable(f"Swift refused kumo's credentials: {exc}") from None
            except Exception as exc:
                raise ServiceUnavailable(f"Swift does not answer at "
                                         f"{s.swift_store_auth_address}: {exc}") from None
        return conn

    def _containers(self, conn: swift.Connection) -> None:
        with self._guard:
            if self._ready:
                return
            for name in (self.container, self.segments):
                try:
                    conn.head_container(name)
                except ClientException as exc:
                    create = self.settings.swift_store_create_container_on_put
                    if exc.http_status != 404 or not create:
                        raise ServiceUnavailable(f"Swift container {name}: {exc}") from None
                    conn.put_container(name)
            self._ready = True

    def _location(self, image_id: str) -> str:
        return self.object_location(self.container, image_id)

    def _object(self, location: str) -> str:
        return self.object_name(self.container, location)

    # -- the interface ---------------------------------------------------------

    def put(self, image_id: str, chunks: Iterable[Chunk]) -> StoredObject:
        conn = self._conn()
        self._containers(conn)
        source = iter(chunks)
        written: list[dict[str, Any]] = []
        carry: memoryview | None = None
        try:
            while True:
                segment = _Segment(source, carry, self.segment_size)
                name = f"{image_id}/{len(written):08d}"
                if not written:
                    # Find out first whether there is anything at all to write.
                    segment.peek_end()
                    if segment.exhausted:
                        conn.put_object(self.container, image_id, contents=b"")
                        return StoredObject(self._location(image_id), 0)
                etag = conn.put_object(self.segments, name, contents=segment)
                if etag != segment.md5.hexdigest():
                    raise KumoError(f"Swift stored segment {name} with ETag {etag}, "
                                    f"but kumo sent {segment.md5.hexdigest()}")
                written.append({"path": f"/{self.segments}/{name}", "etag": etag,
                                "size_bytes": segment.size})
                if not segment.exhausted:
                    segment.peek_end()
                carry = segment.carry
                if segment.exhausted:
                    break
            conn.put_object(self.container, image_id, contents=json.dumps(written),
                            query_string="multipart-manifest=put")
        except BaseException:
            self._drop(conn, [entry["path"] for entry in written])
            raise
        return StoredObject(self._location(image_id), sum(e["size_bytes"] for e in written))

    def _drop(self, conn: swift.Connection, paths: list[str]) -> None:
        for path in paths:
            with contextlib.suppress(ClientException):  # else sweep_partial finds it later
                conn.delete_object(self.segments, path.split("/", 2)[2])

    def get(self, location: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        name = self._object(location)
        headers = {}
        if start or end is not None:
            headers["Range"] = f"bytes={start}-{'' if end is None else end - 1}"
        try:
            _headers, body = self._conn().get_object(self.container, name, headers=headers,
                                                     resp_chunk_size=READ_CHUNK)
        except ClientException as exc:
            if exc.http_status == 404:
                raise NotFound(f"image data is missing from Swift: {location}") from None
            if exc.http_status == 416:  # a range past an empty object's end
                return iter(())
            raise ServiceUnavailable(f"Swift: {exc}") from None
        return iter(body)

    def delete(self, location: str) -> None:
        try:
            self._conn().delete_object(self.container, self._object(location),
                                       query_string="multipart-manifest=delete")
        except ClientException as exc:
            if exc.http_status != 404:
                raise ServiceUnavailable(f"Swift: {exc}") from None

    def locations(self) -> list[str]:
        try:
            _headers, listing = self._conn().get_container(self.container, full_listing=True)
        except ClientException as exc:
            if exc.http_status == 404:
                return []  # nothing was ever written
            raise ServiceUnavailable(f"Swift: {exc}") from None
        return [self._location(entry["name"]) for entry in listing]

    def sweep_partial(self, busy: Callable[[str], bool] = lambda _id: False) -> list[str]:
        conn = self._conn()
        try:
            _h, segments = conn.get_container(self.segments, full_listing=True)
            _h, manifests = conn.get_container(self.container, full_listing=True)
        except ClientException as exc:
            if exc.http_status == 404:
                return []  # nothing was ever written
            raise ServiceUnavailable(f"Swift: {exc}") from None
        whole = {entry["name"] for entry in manifests}
        swept = []
        for entry in segments:
            image_id = entry["name"].split("/", 1)[0]
            if image_id in whole or busy(image_id):
                continue
            try:
                conn.delete_object(self.segments, entry["name"])
            except ClientException as exc:
                if exc.http_status != 404:
                    raise
            swept.append(f"swift://{self.segments}/{entry['name']}")
        return swept
