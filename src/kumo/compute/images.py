"""What compute needs from the image service: boot facts, and snapshots uploaded back.

`GlanceImages` calls `kumo.image.service` in this process; unit tests pass a
fake with the same methods.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.db.engine import session_scope
from kumo.errors import BadRequest
from kumo.runtime import Runtime


@dataclass(frozen=True)
class BootImage:
    id: str
    name: str
    status: str
    min_disk: int = 0  # GB
    min_ram: int = 0  # MB
    virtual_size: int | None = None  # bytes
    properties: dict[str, str] = field(default_factory=dict)


class ImagePort(Protocol):
    def boot_image(self, session: Session, context: RequestContext, image_id: str) -> BootImage:
        """The image a server boots from, if the caller may use it (NotFound otherwise)."""

    def reserve_snapshot(self, context: RequestContext, name: str, disk_format: str,
                         properties: dict[str, str], min_disk: int, min_ram: int) -> str:
        """A new `queued` image for a snapshot, owned by the caller's project; its id."""

    def upload_snapshot(self, context: RequestContext, image_id: str, source: Path) -> None:
        """Stream `source` into the reserved image, which becomes `active`."""

    def abandon_snapshot(self, context: RequestContext, image_id: str) -> None:
        """Delete a reserved image whose snapshot failed."""

    def backups(self, context: RequestContext, server_id: str, backup_type: str) -> list[str]:
        """Ids of the server's backups of this type, oldest first (createBackup rotation)."""

    def activate_mapped(self, image_id: str, properties: dict[str, str]) -> None:
        """Make the reserved image active with no data, only these properties (the block
        device mapping of a volume-backed server's snapshot)."""


def _boot_facts(image: Any) -> BootImage:
    properties = image.property_dict() if hasattr(image, "property_dict") else {}
    return BootImage(
        id=str(image.id), name=str(image.name or ""), status=str(image.status),
        min_disk=int(image.min_disk or 0), min_ram=int(image.min_ram or 0),
        virtual_size=image.virtual_size, properties=dict(properties),
    )


class GlanceImages:
    """The image part of this process (`kumo.image.service`)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def boot_image(self, session: Session, context: RequestContext, image_id: str) -> BootImage:
        from kumo.image import service

        return _boot_facts(service.get_image_for_boot(session, context, image_id))

    def reserve_snapshot(self, context: RequestContext, name: str, disk_format: str,
                         properties: dict[str, str], min_disk: int, min_ram: int) -> str:
        from kumo.image import service

        body: dict[str, Any] = {"name": name, "disk_format": disk_format,
                                "container_format": "bare", "visibility": "private",
                                "min_disk": min_disk, "min_ram": min_ram, **properties}
        with session_scope(self.runtime.sessions) as session:
            return str(service.create_image(session, context, body).id)

    def upload_snapshot(self, context: RequestContext, image_id: str, source: Path) -> None:
        from kumo.image import service
        from kumo.image.upload import file_blocks

        service.upload_image_data(self.runtime, context, image_id, file_blocks(str(source)))

    def abandon_snapshot(self, context: RequestContext, image_id: str) -> None:
        from kumo.image import service

        service.delete_image(self.runtime, context, image_id)

    def backups(self, context: RequestContext, server_id: str, backup_type: str) -> list[str]:
        from sqlalchemy import select

        from kumo.image.models import Image, ImageProperty

        with session_scope(self.runtime.sessions) as session:
            found = []
            for image in session.scalars(select(Image).join(ImageProperty).where(
                    ImageProperty.name == "instance_uuid", ImageProperty.value == server_id,
                    Image.owner == context.project_id).order_by(Image.created_at, Image.id)):
                props = image.property_dict()
                if props.get("image_type") == "backup" and props.get(
                        "backup_type") == backup_type and image.status != "deleted":
                    found.append(str(image.id))
            return found

    def activate_mapped(self, image_id: str, properties: dict[str, str]) -> None:
        from kumo.image import service

        service.activate_without_data(self.runtime, image_id, properties)


def check_bootable(image: BootImage, flavor_ram: int, flavor_disk: int) -> None:
    """nova's checks before a boot: active image, flavor big enough for min_ram/min_disk."""
    if image.status != "active":
        raise BadRequest(f"Image {image.id} is not active.")
    if flavor_ram < image.min_ram:
        raise BadRequest("Flavor's memory is too small for requested image.")
    if flavor_disk:  # 0 means "the image's own size", nothing to compare
        if image.min_disk > flavor_disk:
            raise BadRequest(
                f"Flavor's disk is too small for requested image. Flavor disk is "
                f"{flavor_disk * 1024**3} bytes, minimum requested disk is "
                f"{image.min_disk * 1024**3} bytes."
            )
        if image.virtual_size and image.virtual_size > flavor_disk * 1024**3:
            raise BadRequest(
                f"Flavor's disk is too small for requested image. Flavor disk is "
                f"{flavor_disk * 1024**3} bytes, image is {image.virtual_size} bytes."
            )
