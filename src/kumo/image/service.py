"""The image part's domain operations; HTTP handlers and other parts call these.

Sessions are short: an upload marks the image `saving` in one transaction, streams
with no transaction open, then records the result (or puts the image back to
`queued`) in another. Functions taking a `session` run inside the caller's
transaction, which rolls back on any error: nothing is ever half-changed.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.db.base import utcnow
from kumo.db.engine import session_scope
from kumo.db.locks import held
from kumo.diskformat import qemuimg
from kumo.errors import (
    BadRequest,
    Conflict,
    Forbidden,
    InsufficientStorage,
    KumoError,
    NotFound,
    PayloadTooLarge,
)
from kumo.image import access, changes, introspect, lifecycle
from kumo.image.lifecycle import ACTIVE, DEACTIVATED, QUEUED, SAVING
from kumo.image.models import Image, ImageMember, ImageProperty, ImageTag
from kumo.image.recovery import upload_lock
from kumo.image.schemas import image_view
from kumo.image.upload import ClientGone, IngestResult, file_blocks, ingest
from kumo.runtime import Runtime

log = logging.getLogger(__name__)
MAX_MEMBERS = 128  # Glance's image_member_quota


class ImageView(dict[str, Any]):
    """An image as the API shows it (a dict), with `.id` for convenience."""

    @property
    def id(self) -> str:
        return str(self["id"])


class Gone(KumoError):
    status = 410
    title = "Gone"
    nova_key = "itemNotFound"


def _load(session: Session, image_id: str) -> Image:
    image = session.get(Image, image_id)
    if image is None or image.status == lifecycle.DELETED:
        raise NotFound(f"No image found with ID {image_id}")
    return image


def get_image(session: Session, context: RequestContext, image_id: str) -> Image:
    """The image if the caller may see it; 404 otherwise."""
    image = _load(session, image_id)
    access.check_read(context, image)
    return image


def create_image(session: Session, context: RequestContext, body: dict[str, Any]) -> Image:
    """Register a new image in `queued` from a `POST /v2/images` body."""
    context.require_writer()
    request = changes.parse_create(body)
    base = dict(request.base)
    owner = base.pop("owner", None)
    access.check_set_owner(context, owner)
    visibility = base.get("visibility", "shared")
    access.check_set_visibility(context, visibility)
    if request.image_id is not None and session.get(Image, request.image_id) is not None:
        raise Conflict(f"Image with identifier {request.image_id} already exists!")
    tags = base.pop("tags", [])
    image = Image(owner=owner or context.project_id, status=QUEUED, **base)
    if request.image_id is not None:
        image.id = request.image_id
    image.properties = [ImageProperty(name=k, value=v) for k, v in request.properties.items()]
    image.tags = [ImageTag(value=tag) for tag in tags]
    session.add(image)
    session.flush()
    return image


def update_image(
    session: Session, context: RequestContext, image_id: str, ops: list[changes.PatchOp]
) -> Image:
    """Apply a checked JSON-patch; the caller's transaction makes it all or nothing."""
    image = _load(session, image_id)
    access.check_modify(context, image)
    changed = changes.apply_patch(image, ops)
    if "visibility" in changed:
        access.check_set_visibility(context, image.visibility)
    if "owner" in changed:
        access.check_set_owner(context, image.owner)
    if {"disk_format", "container_format"} & changed and image.status != QUEUED:
        raise Forbidden(
            "disk_format and container_format can only be changed while the image is queued"
        )
    image.updated_at = utcnow()
    session.flush()
    return image


def delete_image(runtime: Runtime, context: RequestContext, image_id: str) -> None:
    """Delete the record, then its bytes (204); 403 when the image is protected."""
    with session_scope(runtime.sessions) as session:
        image = _load(session, image_id)
        access.check_modify(context, image)
        if image.protected:
            raise Forbidden(f"Image {image_id} is protected and cannot be deleted.")
        location = image.location
        session.delete(image)
    if location:
        runtime.store.delete(location)


def add_tag(session: Session, context: RequestContext, image_id: str, tag: str) -> None:
    image = _load(session, image_id)
    access.check_modify(context, image)
    changes.check_tag(tag)
    if tag not in image.tag_list():
        if len(image.tags) >= changes.MAX_TAGS:
            raise PayloadTooLarge(f"Maximum number of tags exceeded ({changes.MAX_TAGS})")
        image.tags.append(ImageTag(value=tag))
        image.updated_at = utcnow()


def remove_tag(session: Session, context: RequestContext, image_id: str, tag: str) -> None:
    image = _load(session, image_id)
    access.check_modify(context, image)
    for row in image.tags:
        if row.value == tag:
            image.tags.remove(row)
            image.updated_at = utcnow()
            return
    raise NotFound(f"Tag {tag} not found on image {image_id}")


def set_active_state(
    session: Session, context: RequestContext, image_id: str, active: bool
) -> None:
    """Deactivate (active -> deactivated) or reactivate.

    Glance's default policy (ADMIN_OR_PROJECT_MEMBER): an admin, or a member of the
    project that owns the image.
    """
    image = _load(session, image_id)
    access.check_modify(context, image)
    target = ACTIVE if active else DEACTIVATED
    if image.status == target:
        return
    if image.status not in (ACTIVE, DEACTIVATED):
        verb = "reactivate" if active else "deactivate"
        raise Forbidden(f"Not allowed to {verb} image in status '{image.status}'")
    lifecycle.check_transition(image.status, target)
    image.status = target
    image.updated_at = utcnow()


# -- members --------------------------------------------------------------------------


def _member(image: Image, member_id: str) -> ImageMember:
    for member in image.members:
        if member.member == member_id:
            return member
    raise NotFound(f"{member_id} is not a member of image {image.id}")


def add_member(
    session: Session, context: RequestContext, image_id: str, member_id: Any
) -> ImageMember:
    """Share a `shared` image with another project (its status starts `pending`)."""
    image = _load(session, image_id)
    access.check_manage_members(context, image)
    if not isinstance(member_id, str) or not member_id or len(member_id) > 255:
        raise BadRequest("'member' must be a project id")
    if image.visibility != "shared":
        raise Forbidden(
            f"Only shared images have members (image {image_id} is {image.visibility})."
        )
    if any(m.member == member_id for m in image.members):
        raise Conflict(f"{member_id} is already a member of image {image_id}")
    if len(image.members) >= MAX_MEMBERS:
        raise PayloadTooLarge(f"Maximum number of image members exceeded ({MAX_MEMBERS})")
    member = ImageMember(member=member_id, status="pending")
    image.members.append(member)
    session.flush()
    return member


def list_members(session: Session, context: RequestContext, image_id: str) -> list[ImageMember]:
    """The owner (or admin) sees every member; a member sees only itself."""
    image = _load(session, image_id)
    access.check_read(context, image)
    if image.visibility != "shared":
        raise Forbidden(
            f"Only shared images have members (image {image_id} is {image.visibility})."
        )
    if context.is_admin or access.is_owner(context, image):
        return sorted(image.members, key=lambda m: m.created_at)
    return [m for m in image.members if m.member == context.project_id]


def get_member(
    session: Session, context: RequestContext, image_id: str, member_id: str
) -> ImageMember:
    image = _load(session, image_id)
    access.check_read(context, image)
    if not (context.is_admin or access.is_owner(context, image) or member_id == context.project_id):
        raise NotFound(f"{member_id} is not a member of image {image_id}")
    return _member(image, member_id)


def update_member(
    session: Session, context: RequestContext, image_id: str, member_id: str, status: Any
) -> ImageMember:
    """The member project accepts, rejects or resets (pending) a share."""
    image = _load(session, image_id)
    member = _member(image, member_id) if access.can_read(context, image) else None
    if member is None:
        raise NotFound(f"No image found with ID {image_id}")
    access.check_member_status_change(context, image, member_id)
    member.status = lifecycle.check_member_status(status)
    member.updated_at = utcnow()
    return member


def remove_member(session: Session, context: RequestContext, image_id: str, member_id: str) -> None:
    image = _load(session, image_id)
    access.check_manage_members(context, image)
    image.members.remove(_member(image, member_id))


# -- data -------------------------------------------------------------------------------


def _begin_upload(
    runtime: Runtime, context: RequestContext | None, image_id: str
) -> tuple[str, str]:
    with session_scope(runtime.sessions) as session:
        image = _load(session, image_id)
        if context is not None:
            access.check_modify(context, image)
        lifecycle.check_upload_allowed(image.status, image.disk_format, image.container_format)
        # A conditional update, so two concurrent uploads cannot both start.
        claimed = session.execute(
            update(Image)
            .where(Image.id == image_id, Image.status == QUEUED)
            .values(status=SAVING, updated_at=utcnow())
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"Image {image_id} is already receiving data")
        assert image.disk_format and image.container_format
        return image.disk_format, image.container_format


def _back_to_queued(runtime: Runtime, image_id: str) -> None:
    with session_scope(runtime.sessions) as session:
        session.execute(
            update(Image)
            .where(Image.id == image_id, Image.status == SAVING)
            .values(status=QUEUED, updated_at=utcnow())
        )


def _finish_upload(runtime: Runtime, image_id: str, result: IngestResult) -> None:
    with session_scope(runtime.sessions) as session:
        image = session.get(Image, image_id)
        if image is None or image.status != SAVING:
            gone = True
        else:
            gone = False
            image.size = result.size
            image.virtual_size = result.virtual_size
            image.checksum = result.checksum
            image.os_hash_algo = result.os_hash_algo
            image.os_hash_value = result.os_hash_value
            image.location = result.location
            lifecycle.check_transition(SAVING, ACTIVE)
            image.status = ACTIVE
            image.updated_at = utcnow()
    if gone:
        runtime.store.delete(result.location)
        raise Gone(f"Image {image_id} was deleted while its data was being uploaded.")


def upload_image_data(
    runtime: Runtime,
    context: RequestContext | None,
    image_id: str,
    blocks: Iterable[bytes | bytearray],
    expected_size: int | None = None,
) -> None:
    """Store an image's data: queued -> saving -> active, or back to queued on any failure.

    Runs on a worker thread. Refused formats, size mismatches, a client that goes
    away and a full disk all leave the image `queued` with no bytes stored.
    """
    # Held from the claim to the record: another process's start-up recovery then
    # knows this upload is alive (kumo.image.recovery).
    with held(runtime.engine, upload_lock(image_id)):
        disk_format, container_format = _begin_upload(runtime, context, image_id)
        try:
            result = ingest(
                runtime.store,
                image_id,
                blocks,
                disk_format=disk_format,
                container_format=container_format,
                expected_size=expected_size,
            )
        except BaseException as exc:
            _back_to_queued(runtime, image_id)
            if isinstance(exc, ClientGone):
                log.info("upload of image %s stopped: %s; the image is queued again",
                         image_id, exc.message)
                raise
            if isinstance(exc, InsufficientStorage):
                # Glance answers a full store with 413 "Image storage media is full".
                raise PayloadTooLarge(f"Image storage media is full: {exc.message}") from exc
            if not isinstance(exc, KumoError):
                log.warning("upload of image %s failed: %s", image_id, exc)
            raise
        try:
            if container_format == "bare":
                result = _checked(runtime, result, disk_format)
        except BaseException:
            runtime.store.delete(result.location)
            _back_to_queued(runtime, image_id)
            raise
        _finish_upload(runtime, image_id, result)
    # os_distro, os_version, os_admin_user from inside it, after the client has its answer.
    introspect.submit(runtime, image_id)


def _checked(runtime: Runtime, result: IngestResult, disk_format: str) -> IngestResult:
    """The stored bytes through `qemu-img info`/`check` (limited) before they go active.

    The stream inspector has passed them; qemu-img opens them as QEMU will at boot,
    so what it refuses (absurd header fields, corruption, encryption) is refused now
    with its reason, not when a server fails to boot. Its virtual size is QEMU's.
    """
    scratch = runtime.settings.run_dir / "image-checks"
    with runtime.store.local_file(result.location, scratch) as path:
        found = qemuimg.check_upload(path, disk_format)
    return replace(result, virtual_size=found.virtual_size)


@dataclass(frozen=True)
class Download:
    """What `GET .../file` streams: bytes [start, end) of an image of `size` bytes."""

    size: int
    start: int
    end: int
    checksum: str | None
    chunks: Iterator[bytes]


def open_download(
    runtime: Runtime, context: RequestContext, image_id: str, byte_range: tuple[int, int] | None
) -> Download | None:
    """The data of an image the caller may download; None when it has no data yet.

    `byte_range` is an inclusive (first, last) pair already checked against the size.
    """
    with session_scope(runtime.sessions) as session:
        image = _load(session, image_id)
        access.check_download(context, image)
        if image.location is None or image.size is None:
            return None
        size, location, checksum = image.size, image.location, image.checksum
    start, end = (0, size) if byte_range is None else (byte_range[0], byte_range[1] + 1)
    return Download(
        size=size,
        start=start,
        end=end,
        checksum=checksum,
        chunks=runtime.store.get(location, start, end),
    )


def image_size(runtime: Runtime, context: RequestContext, image_id: str) -> int | None:
    with session_scope(runtime.sessions) as session:
        image = _load(session, image_id)
        access.check_download(context, image)
        return image.size if image.location else None


# -- for other parts (compute, the hypervisor's image cache) -----------------------------


def get_image_for_boot(session: Session, context: RequestContext | None, image_id: str) -> Image:
    """The `active` image to boot from or cache, access-checked when `context` is given.

    Raises NotFound for an unknown or invisible image and BadRequest when the image
    is not active (queued, saving, deactivated): such an image cannot be booted.
    The record's properties, tags and members are loaded, so it stays usable after
    the session closes.
    """
    image = _load(session, image_id)
    if context is not None:
        access.check_read(context, image)
    # A volume-backed server's snapshot has no data, only block device mappings.
    mapped = any(p.name == "block_device_mapping" for p in image.properties)
    if image.status != ACTIVE or (image.location is None and not mapped):
        raise BadRequest(f"Image {image_id} is not active (status: {image.status})")
    return image


def open_image_data(runtime: Runtime, image: Image) -> Iterator[bytes]:
    """Stream an active image's bytes from the store (the caller hashes/writes them)."""
    if image.location is None:
        raise Conflict(f"Image {image.id} has no data")
    return runtime.store.get(image.location)


def create_image_from_file(
    runtime: Runtime,
    context: RequestContext,
    name: str,
    path: Path | str,
    disk_format: str,
    container_format: str = "bare",
    properties: Mapping[str, str] | None = None,
    visibility: str = "private",
) -> ImageView:
    """Register the file at `path` as a new image owned by the caller's project (snapshots).

    The file is inspected and hashed like an upload; on any failure the new record is
    removed again and the error raised. Returns the image as the API shows it.
    """
    body: dict[str, Any] = {
        "name": name,
        "disk_format": disk_format,
        "container_format": container_format,
        "visibility": visibility,
        **(properties or {}),
    }
    with session_scope(runtime.sessions) as session:
        image_id = create_image(session, context, body).id
    try:
        upload_image_data(runtime, context, image_id, file_blocks(str(path)))
    except BaseException:
        with session_scope(runtime.sessions) as session:
            image = session.get(Image, image_id)
            if image is not None:
                session.delete(image)
        raise
    with session_scope(runtime.sessions) as session:
        return ImageView(image_view(_load(session, image_id)))


def activate_without_data(runtime: Runtime, image_id: str,
                          properties: Mapping[str, str]) -> None:
    """queued -> active with no data: nova's snapshot of a volume-backed server, whose
    disks are volume snapshots named in `block_device_mapping` (Glance: size 0)."""
    import hashlib

    set_image_properties(runtime, image_id, properties)
    with session_scope(runtime.sessions) as session:
        image = _load(session, image_id)
        lifecycle.check_transition(image.status, ACTIVE)
        image.status, image.size, image.virtual_size = ACTIVE, 0, None
        image.checksum = hashlib.md5(b"", usedforsecurity=False).hexdigest()
        image.os_hash_algo, image.os_hash_value = "sha512", hashlib.sha512(b"").hexdigest()
        image.updated_at = utcnow()


def set_image_properties(
    runtime: Runtime, image_id: str, properties: Mapping[str, str | None]
) -> dict[str, Any]:
    """Internal/admin: set (or with None, remove) custom properties such as os_admin_user.

    No access check: for kumo's own parts and admin tooling. Values must be strings.
    """
    with session_scope(runtime.sessions) as session:
        image = _load(session, image_id)
        current = {p.name: p for p in image.properties}
        for name, value in properties.items():
            if value is None:
                if name in current:
                    image.properties.remove(current.pop(name))
                continue
            checked = changes.check_property(name, value)
            if name in current:
                current[name].value = checked
            else:
                current[name] = ImageProperty(name=name, value=checked)
                image.properties.append(current[name])
        image.updated_at = utcnow()
        session.flush()
        return image_view(image)
