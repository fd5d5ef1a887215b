"""What Block Storage needs from the image service: an image's facts and bytes (volume
from image), and a new image filled from a volume (upload to image).

`kumo up` runs both in one process, so this calls `kumo.image.service` directly, as
Cinder calls Glance's API.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.db.engine import session_scope
from kumo.errors import BadRequest, KumoError
from kumo.runtime import Runtime

# Image properties a volume does not carry over (Cinder's glance_core_properties are
# kept as facts; these are the image service's own bookkeeping).
_NOT_COPIED = frozenset({"owner_specified.openstack.md5", "owner_specified.openstack.sha256",
                         "owner_specified.openstack.object", "block_device_mapping",
                         "bdm_v2", "root_device_name"})


@dataclass(frozen=True)
class ImageFacts:
    id: str
    name: str
    disk_format: str
    container_format: str
    size: int
    virtual_size: int
    min_disk: int
    min_ram: int
    checksum: str | None
    properties: dict[str, str] = field(default_factory=dict)

    def volume_image_metadata(self) -> dict[str, str]:
        """Cinder's volume_glance_metadata: the image's facts and properties, as strings."""
        meta = {k: v for k, v in self.properties.items() if k not in _NOT_COPIED
                and not k.startswith("os_glance")}
        meta.update({"image_id": self.id, "image_name": self.name,
                     "disk_format": self.disk_format, "container_format": self.container_format,
                     "min_disk": str(self.min_disk), "min_ram": str(self.min_ram),
                     "size": str(self.size), "checksum": self.checksum or ""})
        return meta


def facts_of(image: Any) -> ImageFacts:
    """An image record's facts (kumo.image.models.Image)."""
    return ImageFacts(
        id=image.id, name=image.name or "", disk_format=image.disk_format,
        container_format=image.container_format or "bare", size=int(image.size or 0),
        virtual_size=int(image.virtual_size or image.size or 0),
        min_disk=int(image.min_disk or 0), min_ram=int(image.min_ram or 0),
        checksum=image.checksum, properties=image.property_dict())


class VolumeImages:
    """The image service of this process."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def lookup(self, session: Session, context: RequestContext, image_id: str) -> ImageFacts:
        """An active image the caller may read; Cinder's 400 otherwise."""
        from kumo.image import service

        try:
            image: Any = service.get_image_for_boot(session, context, image_id)
        except KumoError:
            raise BadRequest("Invalid image identifier or unable to access requested image "
                             f"({image_id}): it must exist, be visible to you and be active."
                             ) from None
        if image.container_format not in (None, "bare"):
            raise BadRequest(f"Image {image_id} has container_format "
                             f"{image.container_format!r}; a volume needs a bare disk image")
        if image.disk_format in ("ami", "ari", "aki"):
            raise BadRequest(f"Image {image_id} is an {image.disk_format} kernel or ramdisk, "
                             "not a disk")
        return facts_of(image)

    @contextlib.contextmanager
    def local_file(self, image_id: str) -> Iterator[Path]:
        """The image's bytes as a file: the store's own when it keeps files, else a copy
        under DATA/volumes (removed afterwards), as Cinder's image_conversion_dir."""
        from kumo.image import service

        with session_scope(self.runtime.sessions) as session:
            image: Any = service.get_image_for_boot(session, None, image_id)
            location = image.location
        if not location:
            raise BadRequest(f"Image {image_id} has no data")
        with self.runtime.store.local_file(location, self.runtime.settings.volumes_dir) as path:
            yield path

    def reserve(self, context: RequestContext, body: dict[str, Any]) -> dict[str, Any]:
        """A new queued image (Glance's create); its record as the API shows it."""
        from kumo.image import service
        from kumo.image.schemas import image_view

        with session_scope(self.runtime.sessions) as session:
            return image_view(service.create_image(session, context, body))

    def upload(self, context: RequestContext, image_id: str, path: Path) -> None:
        """Fill the reserved image from `path` (inspected and hashed like any upload)."""
        from kumo.image import service
        from kumo.image.upload import file_blocks

        service.upload_image_data(self.runtime, context, image_id, file_blocks(str(path)))

    def abandon(self, context: RequestContext, image_id: str) -> None:
        from kumo.image import service

        with contextlib.suppress(KumoError):
            service.delete_image(self.runtime, context, image_id)
