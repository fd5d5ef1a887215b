"""Image bytes as files in one folder: `<dir>/<image id>`."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import urlparse

from kumo.errors import InsufficientStorage, NotFound
from kumo.store.base import ImageStore, StoredObject

PARTIAL_SUFFIX = ".partial"
READ_CHUNK = 1024 * 1024


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

    def put(self, image_id: str, chunks: Iterable[bytes]) -> StoredObject:
        final = self.root / image_id
        partial = final.with_name(final.name + PARTIAL_SUFFIX)
        size = 0
        try:
            with open(partial, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
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
        return StoredObject(location=final.as_uri(), size=size)

    def get(self, location: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        path = self._path(location)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - closed by the generator
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

    def sweep_partial(self) -> list[str]:
        swept = []
        for leftover in self.root.glob("*" + PARTIAL_SUFFIX):
            leftover.unlink(missing_ok=True)
            swept.append(str(leftover))
        return swept
