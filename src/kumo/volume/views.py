"""Cinder v3's JSON shapes: volumes, snapshots, types, attachments, by microversion."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from kumo.api.context import RequestContext
from kumo.volume.microversion import Version
from kumo.volume.models import (
    ATTACHED,
    DEFAULT_TYPE_ID,
    DEFAULT_TYPE_NAME,
    Volume,
    VolumeAttachment,
    VolumeSnapshot,
)


def iso(moment: datetime | None) -> str | None:
    """Cinder's timestamps: microseconds, no zone."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%f") if moment else None


def links(base: str, kind: str, item_id: str) -> list[dict[str, str]]:
    root = base.rsplit("/v3", 1)[0]
    return [{"rel": "self", "href": f"{base}/{kind}/{item_id}"},
            {"rel": "bookmark", "href": f"{root}/{kind}/{item_id}"}]


def default_type(version: Version, *, with_description: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"id": DEFAULT_TYPE_ID, "name": DEFAULT_TYPE_NAME,
                            "is_public": True, "extra_specs": {},
                            "os-volume-type-access:is_public": True, "qos_specs_id": None}
    if with_description:
        body["description"] = "Default Volume Type"
    return body


def attachment_entries(volume: Volume, attachments: list[VolumeAttachment],
                       context: RequestContext) -> list[dict[str, Any]]:
    """The volume's `attachments`: only those the server really has (status attached)."""
    shown = []
    for entry in attachments:
        if entry.status != ATTACHED:
            continue
        shown.append({"id": volume.id, "attachment_id": entry.id, "volume_id": volume.id,
                      "server_id": entry.server_id,
                      "host_name": "localhost" if context.is_admin else None,
                      "device": entry.device, "attached_at": iso(entry.attached_at)})
    return shown


def volume_view(volume: Volume, attachments: list[VolumeAttachment], base: str,
                version: Version, context: RequestContext, *,
                detail: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {"id": volume.id, "name": volume.name,
                            "links": links(base, "volumes", volume.id)}
    if not detail:
        return body
    body.update({
        "status": volume.status, "size": volume.size,
        "availability_zone": volume.availability_zone,
        "created_at": iso(volume.created_at), "updated_at": iso(volume.updated_at),
        "description": volume.description, "volume_type": DEFAULT_TYPE_NAME,
        "snapshot_id": volume.snapshot_id, "source_volid": volume.source_volid,
        "metadata": dict(volume.meta or {}), "user_id": volume.user_id,
        "bootable": "true" if volume.bootable else "false", "encrypted": False,
        "replication_status": None, "consistencygroup_id": None, "multiattach": False,
        "attachments": attachment_entries(volume, attachments, context),
        "os-vol-tenant-attr:tenant_id": volume.project_id,
    })
    if volume.image_meta:
        body["volume_image_metadata"] = dict(volume.image_meta)
    if context.is_admin:
        body.update({"migration_status": None, "os-vol-host-attr:host": "localhost@qcow2#qcow2",
                     "os-vol-mig-status-attr:migstat": None,
                     "os-vol-mig-status-attr:name_id": None})
    if version >= (3, 13):
        body["group_id"] = None
    if version >= (3, 21) and context.is_admin:
        body["provider_id"] = None
    if version >= (3, 48):
        body["shared_targets"] = False
        body["service_uuid"] = None
    if version >= (3, 61) and context.is_admin:
        body["cluster_name"] = None
    if version >= (3, 63):
        body["volume_type_id"] = DEFAULT_TYPE_ID
    if version >= (3, 65):
        body["consumes_quota"] = True
    return body


def snapshot_view(snapshot: VolumeSnapshot, version: Version, *,
                  detail: bool = True) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": snapshot.id, "created_at": iso(snapshot.created_at),
        "updated_at": iso(snapshot.updated_at), "name": snapshot.name,
        "description": snapshot.description, "volume_id": snapshot.volume_id,
        "status": snapshot.status, "size": snapshot.size, "metadata": dict(snapshot.meta or {}),
    }
    if not detail:
        return body
    body["os-extended-snapshot-attributes:project_id"] = snapshot.project_id
    body["os-extended-snapshot-attributes:progress"] = \
        "100%" if snapshot.status == "available" else "0%"
    if version >= (3, 14):
        body["group_snapshot_id"] = None
    if version >= (3, 41):
        body["user_id"] = snapshot.user_id
    if version >= (3, 65):
        body["consumes_quota"] = True
    return body


def attachment_view(entry: VolumeAttachment, volume: Volume) -> dict[str, Any]:
    """Cinder 3.27's attachment record (`openstack volume attachment show`)."""
    return {"id": entry.id, "volume_id": entry.volume_id, "instance": entry.server_id,
            "status": entry.status if entry.status != "detaching" else "detaching",
            "attach_mode": entry.attach_mode, "attached_at": iso(entry.attached_at),
            "detached_at": None,
            "connection_info": {"driver_volume_type": "file", "serial": volume.id,
                                "access_mode": entry.attach_mode}}
