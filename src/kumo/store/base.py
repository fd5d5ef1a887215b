"""The store interface: put a stream, get it back (whole or a range), delete it.

Backends are small classes registered by URL scheme in `BACKENDS`.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class StoredObject:
    location: str  # e.g. file:///var/lib/kumo/images/<id>
    size: int


class ImageStore(ABC):
    """Where image bytes live. Writes are all-or-nothing: a failed put leaves nothing."""

    scheme: str

    @abstractmethod
    def put(self, image_id: str, chunks: Iterable[bytes]) -> StoredObject:
        """Write `chunks` durably (temp file, fsync, rename) and return where they are."""

    @abstractmethod
    def get(self, location: str, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes [start, end) of the object (end None: to the end)."""

    @abstractmethod
    def delete(self, location: str) -> None:
        """Remove the object; removing one that is already gone is not an error."""

    @abstractmethod
    def sweep_partial(self, busy: Callable[[str], bool] = lambda _id: False) -> list[str]:
        """Remove leftovers of writes that never finished (after a crash); return them.

        `busy(image_id)` is true while some process is still writing that image's data
        (several API processes share one store): its leftovers are not leftovers yet.
        """

    @abstractmethod
    def locations(self) -> list[str]:
        """Every complete object in the store (to find orphans after a crash)."""

    def object_location(self, place: str, image_id: str) -> str:
        """`scheme://place/image_id`: an object in a container or bucket."""
        return f"{self.scheme}://{place}/{image_id}"

    def object_name(self, place: str, location: str) -> str:
        """The image id of `scheme://place/image_id`; NotFound for any other location."""
        from kumo.errors import NotFound

        prefix = f"{self.scheme}://{place}/"
        name = location[len(prefix):]
        if not location.startswith(prefix) or not name or "/" in name:
            raise NotFound(f"image data location {location!r} is not in this store")
        return name

    def image_id_of(self, location: str) -> str:
        """The image id an object was stored under (`put(image_id, ...)`)."""
        return location.rstrip("/").rsplit("/", 1)[-1]

    @contextlib.contextmanager
    def local_file(self, location: str, scratch: Path) -> Iterator[Path]:
        """The object as a local file (for qemu-img), copied under `scratch` if need be.

        Stores whose objects are files already override this to hand out the path.
        """
        scratch.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(dir=scratch, suffix=".check")
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in self.get(location):
                    out.write(chunk)
            yield Path(name)
        finally:
            os.unlink(name)
