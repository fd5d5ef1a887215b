"""Volume snapshot records: create (from an available volume, or an in-use one with
`force` or from microversion 3.66), list, show, update, delete, metadata."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.config import Settings
from kumo.errors import BadRequest, NotFound
from kumo.volume import quotas
from kumo.volume.models import AVAILABLE, CREATING, ERROR, IN_USE, Volume, VolumeSnapshot
from kumo.volume.volumes import (
    InvalidInput,
    InvalidVolume,
    attachments_of,
    check_metadata,
    get_volume,
    paginate,
    parse_dict_filter,
    scoped,
    visible,
)

SNAPSHOT_STATUSES = ("creating", "available", "backing-up", "deleting", "error", "deleted",
                     "unmanaging", "restoring", "error_deleting")


class InvalidSnapshot(BadRequest):
    def __init__(self, reason: str) -> None:
        super().__init__(f"Invalid snapshot: {reason}")


def get_snapshot(session: Session, context: RequestContext, snapshot_id: str) -> VolumeSnapshot:
    snapshot = session.get(VolumeSnapshot, snapshot_id)
    if snapshot is None or not visible(context, snapshot.project_id):
        raise NotFound(f"Snapshot {snapshot_id} could not be found.")
    return snapshot


def _truthy(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.lower() in ("true", "1", "yes")
    raise InvalidInput(f"Invalid value {value!r} for 'force': expected a boolean")


def create_snapshot(session: Session, context: RequestContext, settings: Settings, body: Any,
                    version: tuple[int, int]) -> tuple[VolumeSnapshot, str | None]:
    """POST /snapshots: a `creating` record, and the server to pause while copying (if any)."""
    context.require_writer()
    spec = body.get("snapshot") if isinstance(body, dict) else None
    if not isinstance(spec, dict):
        raise BadRequest("Missing required element 'snapshot' in request body.")
    volume = get_volume(session, context, str(spec.get("volume_id")))
    force = _truthy(spec.get("force", False))
    server_id = None
    if volume.status == IN_USE:
        if not force and version < (3, 66):
            raise InvalidVolume(f"Volume {volume.id} is in-use: snapshotting an attached "
                                "volume needs force=True (or microversion 3.66)")
        entries = attachments_of(session, [volume.id])[volume.id]
        server_id = entries[0].server_id if entries else None
    elif volume.status != AVAILABLE:
        raise InvalidVolume(f"Volume {volume.id} status must be available (or in-use) to be "
                            f"snapshotted; it is {volume.status}.")
    name = spec.get("name", spec.get("display_name"))
    description = spec.get("description", spec.get("display_description"))
    for key, value in (("name", name), ("description", description)):
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise InvalidInput(f"'{key}' must be a string of at most 255 characters")
    quotas.check(session, settings, volume.project_id, snapshots=1, gigabytes=volume.size)
    snapshot = VolumeSnapshot(volume_id=volume.id, name=name, description=description,
                              project_id=volume.project_id, user_id=context.user_id,
                              size=volume.size, status=CREATING,
                              meta=check_metadata(spec.get("metadata")))
    session.add(snapshot)
    session.flush()
    return snapshot, server_id


_LIST_FILTERS = {"name", "status", "volume_id", "all_tenants", "project_id", "metadata",
                 "limit", "marker", "offset", "sort", "sort_key", "sort_dir", "with_count",
                 "display_name"}


def list_snapshots(session: Session, context: RequestContext,
                   query: dict[str, str]) -> list[VolumeSnapshot]:
    unknown = set(query) - _LIST_FILTERS
    if unknown:
        raise InvalidInput(f"Invalid filter keys: {', '.join(sorted(unknown))}")
    stmt = scoped(select(VolumeSnapshot), VolumeSnapshot, context, query, SNAPSHOT_STATUSES)
    if "volume_id" in query:
        stmt = stmt.where(VolumeSnapshot.volume_id == query["volume_id"])
    found = list(session.scalars(stmt))
    if "metadata" in query:
        wanted = parse_dict_filter(query["metadata"])
        found = [s for s in found if all((s.meta or {}).get(k) == v for k, v in wanted.items())]
    return paginate(found, query)


def update_snapshot(session: Session, context: RequestContext, snapshot_id: str,
                    body: Any) -> VolumeSnapshot:
    context.require_writer()
    spec = body.get("snapshot") if isinstance(body, dict) else None
    if not isinstance(spec, dict) or not spec:
        raise BadRequest("Missing required element 'snapshot' in request body.")
    snapshot = get_snapshot(session, context, snapshot_id)
    for key, column in (("name", "name"), ("display_name", "name"),
                        ("description", "description"), ("display_description", "description")):
        if key in spec:
            value = spec[key]
            if value is not None and (not isinstance(value, str) or len(value) > 255):
                raise InvalidInput(f"'{key}' must be a string of at most 255 characters")
            setattr(snapshot, column, value)
    unknown = set(spec) - {"name", "display_name", "description", "display_description"}
    if unknown:
        raise InvalidInput(f"Additional properties are not allowed ({', '.join(sorted(unknown))})")
    session.flush()
    return snapshot


def begin_delete(session: Session, context: RequestContext, snapshot_id: str, *,
                 has_dependents: bool) -> VolumeSnapshot:
    """Mark the snapshot `deleting`; 400 while it is busy or volumes still stand on it."""
    context.require_writer()
    snapshot = get_snapshot(session, context, snapshot_id)
    if snapshot.status not in (AVAILABLE, ERROR, "error_deleting"):
        raise InvalidSnapshot(f"Snapshot {snapshot.id} status must be available or error to "
                              f"be deleted; it is {snapshot.status}.")
    if has_dependents:
        dependents = list(session.scalars(select(Volume.id).where(
            Volume.snapshot_id == snapshot.id)))
        if dependents:
            raise InvalidSnapshot(
                f"deleting snapshot {snapshot.name or snapshot.id} that has dependent volumes "
                f"({', '.join(dependents)}): volumes made from a snapshot are copy-on-write "
                "overlays on it; delete them (or clone them first) before the snapshot")
    snapshot.status = "deleting"
    return snapshot
