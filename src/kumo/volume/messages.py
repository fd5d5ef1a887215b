"""User messages (GET /messages, Cinder 3.3): why a volume or snapshot went to error.

Cinder keeps a message table; kumo keeps the reason on the failed record itself (its
`error`), so a message lives exactly as long as the record shows the failure.
"""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.volume.models import Volume, VolumeSnapshot
from kumo.volume.views import iso, links

_NAMESPACE = uuid.UUID("5e0c1f2a-7b3d-4c8e-9a6f-0d1e2f3a4b5c")


def list_messages(session: Session, context: RequestContext, base: str) -> list[dict[str, Any]]:
    volumes = select(Volume).where(Volume.error.is_not(None))
    snapshots = select(VolumeSnapshot).where(VolumeSnapshot.error.is_not(None))
    if not context.is_admin:
        volumes = volumes.where(Volume.project_id == context.project_id)
        snapshots = snapshots.where(VolumeSnapshot.project_id == context.project_id)
    failed: list[tuple[Volume | VolumeSnapshot, str]] = [
        *((v, "VOLUME") for v in session.scalars(volumes)),
        *((s, "VOLUME_SNAPSHOT") for s in session.scalars(snapshots))]
    found = []
    for record, kind in failed:
        message_id = str(uuid.uuid5(_NAMESPACE, f"{record.id}/{record.updated_at}"))
        found.append({
            "id": message_id, "resource_type": kind, "resource_uuid": record.id,
            "request_id": f"req-{message_id}", "event_id": f"{kind}_001",
            "message_level": "ERROR", "user_message": record.error,
            "created_at": iso(record.updated_at),
            "guaranteed_until": iso(record.updated_at + timedelta(days=30)),
            "links": links(base, "messages", message_id),
        })
    return sorted(found, key=lambda m: str(m["created_at"]), reverse=True)
