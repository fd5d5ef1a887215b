"""Image bytes: one small interface; backends by `[glance_store] default_store`.

`BACKENDS` names each backend by its location scheme. `build_store` returns the
configured one for writing; locations written by another backend (images uploaded
before a switch from `file` to `swift`, say) are still read and deleted by theirs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from kumo.config import Settings
from kumo.errors import NotFound
from kumo.store.base import ImageStore, StoredObject


def _file(settings: Settings) -> ImageStore:
    from kumo.store.filesystem import FilesystemStore

    return FilesystemStore(settings.images_dir)


def _swift(settings: Settings) -> ImageStore:
    from kumo.store.swift import SwiftStore

    return SwiftStore(settings.store)


def _s3(settings: Settings) -> ImageStore:
    from kumo.store.s3 import S3Store

    return S3Store(settings.store)


BACKENDS: dict[str, Callable[[Settings], ImageStore]] = {"file": _file, "swift": _swift, "s3": _s3}


class Stores(ImageStore):
    """Writes to the configured backend; reads and deletes by each location's scheme."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.default = BACKENDS[settings.store.default_store](settings)
        self.scheme = self.default.scheme
        self._others: dict[str, ImageStore] = {}

    def _for(self, location: str) -> ImageStore:
        scheme = location.split("://", 1)[0]
        if scheme == self.default.scheme:
            return self.default
        if scheme not in self._others:
            if scheme not in BACKENDS:
                raise NotFound(f"image data location {location!r} is in no store kumo knows")
            self._others[scheme] = BACKENDS[scheme](self.settings)
        return self._others[scheme]

    def put(self, image_id: str, chunks: Iterable[bytes]) -> StoredObject:
        return self.default.put(image_id, chunks)

    def get(self, location: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        return self._for(location).get(location, start, end)

    def delete(self, location: str) -> None:
        self._for(location).delete(location)

    def sweep_partial(self, busy: Callable[[str], bool] = lambda _id: False) -> list[str]:
        return self.default.sweep_partial(busy)

    def locations(self) -> list[str]:
        return self.default.locations()

    def image_id_of(self, location: str) -> str:
        return self._for(location).image_id_of(location)

    @contextlib.contextmanager
    def local_file(self, location: str, scratch: Path) -> Iterator[Path]:
        with self._for(location).local_file(location, scratch) as path:
            yield path


def build_store(settings: Settings) -> ImageStore:
    """The image store `[glance_store]` configures."""
    return Stores(settings)
