"""Where the image cache gets image bytes from: the seam between a host and the image service.

`kumo up` runs both in one process, so `LocalImageFetcher` reads the image service
directly; a remote agent would fetch `GET /v2/images/{id}/file` instead. Either way
the cache verifies what arrives against the checksums the image record states.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from kumo.errors import BadRequest

if TYPE_CHECKING:
    from kumo.runtime import Runtime


@dataclass(frozen=True)
class FetchedImage:
    """What the image service says about the bytes just written (checked by the cache)."""

    disk_format: str
    size: int
    checksum: str | None  # md5 hex, Glance's `checksum`
    os_hash_value: str | None
    os_hash_algo: str = "sha512"


class ImageFetcher(Protocol):
    def fetch(self, image_id: str, dest_partial: Path) -> FetchedImage:
        """Write the image's bytes to `dest_partial` (streamed) and describe them."""


class LocalImageFetcher:
    """Reads images from this process's image service (`kumo.image.service`)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def fetch(self, image_id: str, dest_partial: Path) -> FetchedImage:
        from kumo.db.engine import session_scope
        from kumo.image import service

        # No request context: compute already checked the user may boot the image.
        with session_scope(self.runtime.sessions) as session:
            image: Any = service.get_image_for_boot(session, None, image_id)
        disk_format = str(image.disk_format or "")
        if not disk_format:
            raise BadRequest(f"image {image_id} has no disk_format")
        fd = os.open(dest_partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        with os.fdopen(fd, "wb") as out:
            for chunk in service.open_image_data(self.runtime, image):
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        return FetchedImage(
            disk_format=disk_format,
            size=int(image.size or 0),
            checksum=image.checksum,
            os_hash_value=image.os_hash_value,
            os_hash_algo=image.os_hash_algo or "sha512",
        )
