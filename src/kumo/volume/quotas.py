"""Block Storage quotas per project: volumes, snapshots and gigabytes, as Cinder counts.

Defaults come from `[DEFAULT] quota_volumes / quota_snapshots / quota_gigabytes`;
an admin overrides them per project (`openstack quota set --volumes N PROJECT`).
Gigabytes count volumes and snapshots alike (Cinder's `no_snapshot_gb_quota =
False`). -1 means unlimited.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.config import Settings
from kumo.errors import BadRequest, PayloadTooLarge
from kumo.volume.models import DEFAULT_TYPE_NAME, Volume, VolumeQuota, VolumeSnapshot

RESOURCES = ("volumes", "snapshots", "gigabytes")
# Shown as Cinder shows them, never enforced here: kumo has no backups or groups, and
# one volume type whose own quotas are unlimited.
FIXED = {"backups": 0, "backup_gigabytes": 0, "groups": 0, "per_volume_gigabytes": -1,
         f"volumes_{DEFAULT_TYPE_NAME}": -1, f"snapshots_{DEFAULT_TYPE_NAME}": -1,
         f"gigabytes_{DEFAULT_TYPE_NAME}": -1}


class QuotaExceeded(PayloadTooLarge):
    """413 overLimit, Cinder's QuotaError."""


def defaults(settings: Settings) -> dict[str, int]:
    return {"volumes": settings.volume.quota_volumes,
            "snapshots": settings.volume.quota_snapshots,
            "gigabytes": settings.volume.quota_gigabytes}


def limits(session: Session, settings: Settings, project_id: str) -> dict[str, int]:
    found = defaults(settings)
    for row in session.scalars(select(VolumeQuota).where(VolumeQuota.project_id == project_id)):
        found[row.resource] = row.hard_limit
    return found


def usage(session: Session, project_id: str) -> dict[str, int]:
    volumes, volume_gb = session.execute(
        select(func.count(Volume.id), func.coalesce(func.sum(Volume.size), 0))
        .where(Volume.project_id == project_id)).one()
    snapshots, snapshot_gb = session.execute(
        select(func.count(VolumeSnapshot.id), func.coalesce(func.sum(VolumeSnapshot.size), 0))
        .where(VolumeSnapshot.project_id == project_id)).one()
    return {"volumes": int(volumes), "snapshots": int(snapshots),
            "gigabytes": int(volume_gb) + int(snapshot_gb)}


def check(session: Session, settings: Settings, project_id: str, *, volumes: int = 0,
          snapshots: int = 0, gigabytes: int = 0) -> None:
    """Refuse (413) what would take the project over one of its limits."""
    allowed = limits(session, settings, project_id)
    used = usage(session, project_id)
    if volumes and 0 <= allowed["volumes"] < used["volumes"] + volumes:
        raise QuotaExceeded(f"VolumeLimitExceeded: Maximum number of volumes allowed "
                            f"({allowed['volumes']}) exceeded for quota 'volumes'.")
    if snapshots and 0 <= allowed["snapshots"] < used["snapshots"] + snapshots:
        raise QuotaExceeded(f"SnapshotLimitExceeded: Maximum number of snapshots allowed "
                            f"({allowed['snapshots']}) exceeded")
    if gigabytes and 0 <= allowed["gigabytes"] < used["gigabytes"] + gigabytes:
        raise QuotaExceeded(
            f"VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed "
            f"gigabytes quota. Requested {gigabytes}G, quota is {allowed['gigabytes']}G and "
            f"{used['gigabytes']}G has been consumed.")


def quota_set(session: Session, settings: Settings, project_id: str, *,
              with_usage: bool = False) -> dict[str, Any]:
    """GET /os-quota-sets/{project}[?usage=true]."""
    allowed = {**limits(session, settings, project_id), **FIXED}
    body: dict[str, Any] = {"id": project_id}
    if not with_usage:
        return {**body, **allowed}
    used = usage(session, project_id)
    for name, limit in allowed.items():
        body[name] = {"limit": limit, "in_use": used.get(name, 0), "reserved": 0,
                      "allocated": 0}
    return body


def default_set(settings: Settings, project_id: str) -> dict[str, Any]:
    return {"id": project_id, **defaults(settings), **FIXED}


def update(session: Session, context: RequestContext, settings: Settings, project_id: str,
           body: Any) -> dict[str, Any]:
    """PUT /os-quota-sets/{project} (admin): set limits; unknown keys are a 400."""
    context.require_admin()
    values = body.get("quota_set") if isinstance(body, dict) else None
    if not isinstance(values, dict):
        raise BadRequest("Missing required element 'quota_set' in request body.")
    changes: dict[str, int] = {}
    for name, raw in values.items():
        if name in ("tenant_id", "id"):
            continue
        if name not in RESOURCES and name not in FIXED:
            raise BadRequest(f"Invalid input received: Bad key(s) in quota set: {name}")
        try:
            limit = int(raw)
        except (TypeError, ValueError):
            raise BadRequest(f"Invalid input received: Quota '{name}' must be an integer, "
                             f"got {raw!r}") from None
        if limit < -1:
            raise BadRequest(f"Invalid input received: Quota limit {limit} for {name} must "
                             "be -1 or greater.")
        if name in FIXED and limit != FIXED[name]:
            raise BadRequest(f"Invalid input received: kumo does not limit {name} (it has no "
                             "backups or groups and one volume type)")
        if name in RESOURCES:
            changes[name] = limit
    used = usage(session, project_id)
    for name, limit in changes.items():
        if 0 <= limit < used[name]:
            raise BadRequest(f"Invalid input received: Quota limit {limit} for {name} must be "
                             f"equal or greater than existing resources. Current usage is "
                             f"{used[name]}.")
    for name, limit in changes.items():
        row = session.scalar(select(VolumeQuota).where(VolumeQuota.project_id == project_id,
                                                       VolumeQuota.resource == name))
        if row is None:
            session.add(VolumeQuota(project_id=project_id, resource=name, hard_limit=limit))
        else:
            row.hard_limit = limit
    session.flush()
    return {k: v for k, v in quota_set(session, settings, project_id).items() if k != "id"}


def reset(session: Session, context: RequestContext, project_id: str) -> None:
    """DELETE /os-quota-sets/{project} (admin): back to the defaults."""
    context.require_admin()
    for row in session.scalars(select(VolumeQuota).where(VolumeQuota.project_id == project_id)):
        session.delete(row)


def absolute_limits(session: Session, settings: Settings, project_id: str) -> dict[str, Any]:
    """GET /limits: Cinder's absolute limits (no rate limits)."""
    allowed = limits(session, settings, project_id)
    used = usage(session, project_id)
    return {"rate": [], "absolute": {
        "maxTotalVolumes": allowed["volumes"], "maxTotalSnapshots": allowed["snapshots"],
        "maxTotalVolumeGigabytes": allowed["gigabytes"], "maxTotalBackups": 0,
        "maxTotalBackupGigabytes": 0, "totalVolumesUsed": used["volumes"],
        "totalSnapshotsUsed": used["snapshots"], "totalGigabytesUsed": used["gigabytes"],
        "totalBackupsUsed": 0, "totalBackupGigabytesUsed": 0}}
