"""Volume records: create (validated as Cinder does), look up, list, change, and the
status rules every action checks before the slow work starts.

Functions here run inside the caller's database session and change records only;
`kumo.volume.service.VolumeService` does the work in the background and moves the
status on (creating -> available, deleting -> gone, extending -> available, ...).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.config import Settings
from kumo.errors import BadRequest, NotFound
from kumo.volume import quotas
from kumo.volume.images import ImageFacts, VolumeImages
from kumo.volume.models import (
    AVAILABLE,
    CREATING,
    DEFAULT_TYPE_ID,
    DEFAULT_TYPE_NAME,
    ERROR,
    ERROR_EXTENDING,
    IN_USE,
    VOLUME_STATUSES,
    Volume,
    VolumeAttachment,
    VolumeSnapshot,
)

MAX_SIZE_GB = 2**31 - 1
GIB = 1024**3
DELETABLE = (AVAILABLE, ERROR, "error_restoring", ERROR_EXTENDING, "error_managing")


class InvalidVolume(BadRequest):
    """Cinder's InvalidVolume: the volume's state forbids what was asked (400)."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"Invalid volume: {reason}")


class InvalidInput(BadRequest):
    def __init__(self, reason: str) -> None:
        super().__init__(f"Invalid input received: {reason}")


@dataclass(frozen=True)
class CreateSource:
    """Where a new volume's contents come from (at most one is set)."""

    image: ImageFacts | None = None
    snapshot_id: str | None = None
    source_volid: str | None = None


def visible(context: RequestContext, project_id: str) -> bool:
    return context.is_admin or project_id == context.project_id


def get_volume(session: Session, context: RequestContext, volume_id: str) -> Volume:
    volume = session.get(Volume, volume_id)
    if volume is None or not visible(context, volume.project_id):
        raise NotFound(f"Volume {volume_id} could not be found.")
    return volume


def attachments_of(session: Session, volume_ids: list[str]) -> dict[str, list[VolumeAttachment]]:
    found: dict[str, list[VolumeAttachment]] = {vid: [] for vid in volume_ids}
    if volume_ids:
        for entry in session.scalars(select(VolumeAttachment).where(
                VolumeAttachment.volume_id.in_(volume_ids)).order_by(
                VolumeAttachment.created_at)):
            found[entry.volume_id].append(entry)
    return found


def positive_size(value: Any, what: str = "size") -> int:
    """Cinder's size schema: a whole number of GiB, 1 or more (digits in a string too)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInput(f"'{what}' must be an integer, got {value!r}")
    if isinstance(value, str) and not re.fullmatch(r"\s*[0-9]+\s*", value):
        raise InvalidInput(f"'{what}' must be an integer, got {value!r}")
    size = int(value)
    if not 1 <= size <= MAX_SIZE_GB:
        raise InvalidInput(f"'{what}' must be a whole number of GB from 1 to {MAX_SIZE_GB}, "
                           f"got {size}")
    return size


def check_metadata(meta: Any) -> dict[str, str]:
    if meta is None:
        return {}
    if not isinstance(meta, dict):
        raise InvalidInput("metadata must be an object of strings")
    for key, value in meta.items():
        if not isinstance(key, str) or not 1 <= len(key) <= 255:
            raise BadRequest("Invalid metadata: keys must be 1-255 characters")
        if not isinstance(value, str) or len(value) > 255:
            raise BadRequest(f"Invalid metadata size: the value of {key!r} must be a string "
                             "of at most 255 characters")
    return dict(meta)


def check_type(value: Any) -> str:
    """The one type, by name or id; 404 for any other (Cinder's VolumeTypeNotFound)."""
    if value in (None, "", DEFAULT_TYPE_NAME, DEFAULT_TYPE_ID):
        return DEFAULT_TYPE_ID
    raise NotFound(f"Volume type with name {value} could not be found.")


def _text(spec: dict[str, Any], *keys: str, limit: int | None = 255) -> str | None:
    for key in keys:
        if spec.get(key) is not None:
            value = spec[key]
            if not isinstance(value, str) or (limit is not None and len(value) > limit):
                raise InvalidInput(f"'{key}' must be a string of at most {limit} characters")
            return value
    return None


def create_volume(session: Session, context: RequestContext, settings: Settings, body: Any,
                  images: VolumeImages) -> tuple[Volume, CreateSource]:
    """POST /volumes: a `creating` record (the service then fills it)."""
    context.require_writer()
    spec = body.get("volume") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise BadRequest("Missing required element 'volume' in request body.")
    for unsupported, why in (("backup_id", "kumo has no volume backups"),
                             ("consistencygroup_id", "kumo has no consistency groups"),
                             ("group_id", "kumo has no volume groups")):
        if spec.get(unsupported):
            raise BadRequest(f"Invalid input received: {unsupported}: {why}")
    if spec.get("multiattach") in (True, "true", "True"):
        raise BadRequest("Invalid input received: multiattach volumes are not supported")
    zone = spec.get("availability_zone")
    if zone not in (None, "", "nova"):
        raise BadRequest(f"Invalid input received: Availability zone '{zone}' is invalid.")
    volume_type = check_type(spec.get("volume_type"))
    meta = check_metadata(spec.get("metadata"))
    size = spec.get("size")
    source = CreateSource()
    inherited: dict[str, str] = {}
    bootable = False
    snapshot_id = spec.get("snapshot_id")
    source_volid = spec.get("source_volid")
    image_ref = spec.get("imageRef") or spec.get("image_id")
    if sum(bool(x) for x in (snapshot_id, source_volid, image_ref)) > 1:
        raise BadRequest("Invalid input received: give at most one of snapshot_id, "
                         "source_volid and imageRef")
    if snapshot_id:
        snapshot = _snapshot(session, context, str(snapshot_id))
        if snapshot.status != AVAILABLE:
            raise BadRequest("Invalid snapshot: Originating snapshot status must be "
                             f"'available' to create a volume (it is {snapshot.status}).")
        size = snapshot.size if size is None else positive_size(size)
        if size < snapshot.size:
            raise InvalidInput(f"Volume size '{size}'GB cannot be smaller than the snapshot "
                               f"size {snapshot.size}GB. They must be >= original snapshot "
                               "size.")
        parent = session.get(Volume, snapshot.volume_id)
        if parent is not None:
            bootable, inherited = parent.bootable, dict(parent.image_meta or {})
        source = CreateSource(snapshot_id=snapshot.id)
    elif source_volid:
        parent = get_volume(session, context, str(source_volid))
        if parent.status not in (AVAILABLE, IN_USE):
            raise InvalidVolume(f"Source volume {parent.id} must be available or in-use to "
                                f"be cloned (it is {parent.status}).")
        size = parent.size if size is None else positive_size(size)
        if size < parent.size:
            raise InvalidInput(f"Volume size '{size}'GB cannot be smaller than the source "
                               f"volume size {parent.size}GB.")
        bootable, inherited = parent.bootable, dict(parent.image_meta or {})
        source = CreateSource(source_volid=parent.id)
    elif image_ref:
        image = images.lookup(session, context, str(image_ref))
        size = positive_size(size)
        needed = max(image.min_disk, -(-image.virtual_size // GIB))
        if image.min_disk > size:
            raise InvalidInput(f"Image minDisk size {image.min_disk} is larger than the volume "
                               f"size {size}.")
        if needed > size:
            raise InvalidInput(f"Size of specified image {needed}GB is larger than volume size "
                               f"{size}GB.")
        bootable, inherited = True, image.volume_image_metadata()
        source = CreateSource(image=image)
    else:
        if size is None:
            raise InvalidInput("'size' is a required property (or create the volume from a "
                               "snapshot, a volume or an image)")
        size = positive_size(size)
    quotas.check(session, settings, context.project_id, volumes=1, gigabytes=size)
    volume = Volume(
        name=_text(spec, "name", "display_name"),
        description=_text(spec, "description", "display_description", limit=None),
        project_id=context.project_id, user_id=context.user_id, size=size, status=CREATING,
        volume_type_id=volume_type, bootable=bootable, meta=meta, image_meta=inherited,
        snapshot_id=source.snapshot_id, source_volid=source.source_volid,
        image_id=source.image.id if source.image else None,
    )
    session.add(volume)
    session.flush()
    return volume, source


def _snapshot(session: Session, context: RequestContext, snapshot_id: str) -> VolumeSnapshot:
    snapshot = session.get(VolumeSnapshot, snapshot_id)
    if snapshot is None or not visible(context, snapshot.project_id):
        raise NotFound(f"Snapshot {snapshot_id} could not be found.")
    return snapshot


_LIST_FILTERS = {"name", "status", "metadata", "bootable", "all_tenants", "project_id",
                 "user_id", "availability_zone", "limit", "marker", "sort", "sort_key",
                 "sort_dir", "offset", "with_count", "display_name", "volume_type",
                 "created_at", "updated_at", "id"}


def list_volumes(session: Session, context: RequestContext,
                 query: dict[str, str]) -> list[Volume]:
    """GET /volumes[/detail]: the project's volumes (admins: any with all_tenants)."""
    unknown = set(query) - _LIST_FILTERS
    if unknown:
        raise InvalidInput(f"Invalid filter keys: {', '.join(sorted(unknown))}")
    stmt = scoped(select(Volume), Volume, context, query, VOLUME_STATUSES)
    if "availability_zone" in query:
        stmt = stmt.where(Volume.availability_zone == query["availability_zone"])
    if "user_id" in query:
        stmt = stmt.where(Volume.user_id == query["user_id"])
    if "id" in query:
        stmt = stmt.where(Volume.id == query["id"])
    if "volume_type" in query and query["volume_type"] not in (DEFAULT_TYPE_NAME,
                                                                DEFAULT_TYPE_ID):
        return []
    found = list(session.scalars(stmt))
    if "bootable" in query:
        wanted = query["bootable"].lower() in ("1", "true", "yes")
        found = [v for v in found if v.bootable == wanted]
    if "metadata" in query:
        wanted_meta = parse_dict_filter(query["metadata"])
        found = [v for v in found if all((v.meta or {}).get(k) == val
                                         for k, val in wanted_meta.items())]
    return paginate(found, query)


def scoped(stmt: Any, model: Any, context: RequestContext, query: dict[str, str],
           statuses: tuple[str, ...]) -> Any:
    """The filters volumes and snapshots share: the caller's project (an admin's any, with
    all_tenants and maybe project_id), name, status."""
    if "all_tenants" in query and query["all_tenants"].lower() in ("1", "true", "yes", ""):
        context.require_admin()
        if query.get("project_id"):
            stmt = stmt.where(model.project_id == query["project_id"])
    else:
        stmt = stmt.where(model.project_id == context.project_id)
    name = query.get("name", query.get("display_name"))
    if name is not None:
        stmt = stmt.where(model.name == name)
    if "status" in query:
        if query["status"] not in statuses:
            raise InvalidInput(f"Invalid status value: {query['status']}")
        stmt = stmt.where(model.status == query["status"])
    return stmt


def parse_dict_filter(raw: str) -> dict[str, str]:
    """Cinder's `metadata` filter is a stringified dict: "{'k': 'v'}" (OSC sends str(dict))."""
    try:
        parsed = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        raise InvalidInput(f"Invalid metadata filter {raw!r}: expected {{'key': 'value'}}") \
            from None
    if not isinstance(parsed, dict):
        raise InvalidInput(f"Invalid metadata filter {raw!r}: expected {{'key': 'value'}}")
    return {str(k): str(v) for k, v in parsed.items()}


def paginate(items: list[Any], query: dict[str, str]) -> list[Any]:
    """Cinder's sort (created_at desc by default), marker, offset and limit."""
    keys, dirs = _sort_spec(query)
    for key, direction in reversed(list(zip(keys, dirs, strict=True))):
        items.sort(key=_sort_key(key), reverse=direction == "desc")
    if "marker" in query:
        ids = [item.id for item in items]
        if query["marker"] not in ids:
            raise InvalidInput(f"marker [{query['marker']}] not found")
        items = items[ids.index(query["marker"]) + 1:]
    if "offset" in query:
        items = items[_whole(query["offset"], "offset"):]
    if "limit" in query:
        items = items[:_whole(query["limit"], "limit")]
    return items


def _sort_key(name: str) -> Any:
    def key(item: Any) -> tuple[bool, Any]:
        value = getattr(item, name, None)
        return value is None, value if value is not None else ""

    return key


_SORT_KEYS = {"created_at", "updated_at", "name", "status", "size", "id", "display_name"}


def _sort_spec(query: dict[str, str]) -> tuple[list[str], list[str]]:
    if "sort" in query:
        keys, dirs = [], []
        for part in query["sort"].split(","):
            key, _, direction = part.strip().partition(":")
            keys.append(key)
            dirs.append(direction or "desc")
    else:
        keys = [query.get("sort_key", "created_at")]
        dirs = [query.get("sort_dir", "desc")]
    for key, direction in zip(keys, dirs, strict=True):
        if key not in _SORT_KEYS:
            raise InvalidInput(f"Invalid sort key {key!r}")
        if direction not in ("asc", "desc"):
            raise InvalidInput(f"Invalid sort direction {direction!r}")
    return ["name" if k == "display_name" else k for k in keys], dirs


def _whole(raw: str, what: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise InvalidInput(f"{what} param must be an integer") from None
    if value < 0:
        raise InvalidInput(f"{what} param must be positive")
    return value


def update_volume(session: Session, context: RequestContext, volume_id: str,
                  body: Any) -> Volume:
    """PUT /volumes/{id}: name, description, metadata."""
    context.require_writer()
    spec = body.get("volume") if isinstance(body, dict) else None
    if not isinstance(spec, dict) or not spec:
        raise BadRequest("Missing required element 'volume' in request body.")
    volume = get_volume(session, context, volume_id)
    unknown = set(spec) - {"name", "description", "display_name", "display_description",
                           "metadata"}
    if unknown:
        raise InvalidInput(f"Additional properties are not allowed ({', '.join(sorted(unknown))})")
    if "name" in spec or "display_name" in spec:
        volume.name = _text(spec, "name", "display_name")
    if "description" in spec or "display_description" in spec:
        volume.description = _text(spec, "description", "display_description", limit=None)
    if "metadata" in spec:
        volume.meta = check_metadata(spec["metadata"])
    session.flush()
    return volume


def begin_delete(session: Session, context: RequestContext, volume_id: str, *,
                 cascade: bool = False, force: bool = False) -> tuple[Volume, list[str]]:
    """Mark the volume (and with cascade its snapshots) `deleting`; 400 like Cinder when
    it is attached, busy or has snapshots. Returns the volume and the snapshots to delete."""
    context.require_writer()
    volume = get_volume(session, context, volume_id)
    if force:
        context.require_admin()
    attached = [a.server_id for a in attachments_of(session, [volume.id])[volume.id]]
    if attached:
        raise InvalidVolume(f"Volume {volume.id} is attached to server(s) "
                            f"{', '.join(attached)} (status {volume.status}); detach it "
                            "before deleting it.")
    if not force and volume.status not in DELETABLE:
        raise InvalidVolume(f"Volume status must be available or error or error_restoring or "
                            f"error_extending or error_managing to be deleted; volume "
                            f"{volume.id} is {volume.status}.")
    snapshots = list(session.scalars(select(VolumeSnapshot).where(
        VolumeSnapshot.volume_id == volume.id)))
    if snapshots and not cascade:
        raise InvalidVolume(f"Volume {volume.id} still has {len(snapshots)} dependent "
                            "snapshot(s); delete them first (or use --cascade).")
    for snapshot in snapshots:
        if snapshot.status not in (AVAILABLE, ERROR, "deleting"):
            raise InvalidVolume(f"Snapshot {snapshot.id} of volume {volume.id} is "
                                f"{snapshot.status}; it cannot be deleted now.")
        snapshot.status = "deleting"
    volume.status = "deleting"
    return volume, [s.id for s in snapshots]


def begin_extend(session: Session, context: RequestContext, settings: Settings, volume_id: str,
                 new_size: Any, version: tuple[int, int]) -> tuple[Volume, int, str | None]:
    """os-extend: (volume, its old size, the server it is attached to, if any)."""
    context.require_writer()
    volume = get_volume(session, context, volume_id)
    size = positive_size(new_size, "new_size")
    server_id = None
    if volume.status == IN_USE and version >= (3, 42):
        entries = [a for a in attachments_of(session, [volume.id])[volume.id]]
        server_id = entries[0].server_id if entries else None
    elif volume.status != AVAILABLE:
        need = "available or in-use (from microversion 3.42)" if version < (3, 42) else \
            "available or in-use"
        raise InvalidVolume(f"Volume status must be {need} to extend; volume {volume.id} is "
                            f"{volume.status}.")
    if size <= volume.size:
        raise InvalidInput(f"New size for extend must be greater than current size. "
                           f"(current: {volume.size}, extended: {size}).")
    quotas.check(session, settings, volume.project_id, gigabytes=size - volume.size)
    old = volume.size
    volume.status = "extending"
    return volume, old, server_id
