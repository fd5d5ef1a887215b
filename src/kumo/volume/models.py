"""Block Storage tables: volumes, their snapshots, attachments to servers, quotas."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import JSON, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kumo.db.base import Base, new_id


def now() -> datetime:
    """Cinder keeps microseconds (lists sort newest first, even within a second)."""
    return datetime.now(UTC)


# Cinder's volume statuses (cinder/objects/fields.py VolumeStatus), those kumo reaches.
CREATING, AVAILABLE, RESERVED, ATTACHING, DETACHING, IN_USE = (
    "creating", "available", "reserved", "attaching", "detaching", "in-use")
DELETING, ERROR, ERROR_DELETING, ERROR_EXTENDING = (
    "deleting", "error", "error_deleting", "error_extending")
EXTENDING, UPLOADING, DOWNLOADING = "extending", "uploading", "downloading"
VOLUME_STATUSES = (CREATING, AVAILABLE, RESERVED, ATTACHING, DETACHING, IN_USE, DELETING,
                   ERROR, ERROR_DELETING, ERROR_EXTENDING, EXTENDING, UPLOADING,
                   DOWNLOADING, "maintenance", "awaiting-transfer", "backing-up",
                   "restoring-backup", "error_backing-up", "error_restoring", "retyping")

# Attachment statuses (VolumeAttachStatus).
ATTACHED, DETACHED = "attached", "detached"

# The one volume type (Cinder creates `__DEFAULT__` when its database is made).
DEFAULT_TYPE_ID = "7d4e8f56-9c3b-4a1e-8f2d-5b6a7c8d9e01"
DEFAULT_TYPE_NAME = "__DEFAULT__"


class Volume(Base):
    __tablename__ = "volumes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)  # GiB
    status: Mapped[str] = mapped_column(String(32), default=CREATING, index=True)
    volume_type_id: Mapped[str] = mapped_column(String(36), default=DEFAULT_TYPE_ID)
    availability_zone: Mapped[str] = mapped_column(String(255), default="nova")
    bootable: Mapped[bool] = mapped_column(default=False)
    readonly: Mapped[bool] = mapped_column(default=False)
    source_volid: Mapped[str | None] = mapped_column(String(36), default=None)
    snapshot_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    image_id: Mapped[str | None] = mapped_column(String(36), default=None)
    meta: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # The image's facts and properties when made from one (Cinder's volume_glance_metadata).
    image_meta: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    # Which driver holds the bytes, and its reference to them (a file name for qcow2).
    backend: Mapped[str] = mapped_column(String(32), default="qcow2")
    provider_location: Mapped[str | None] = mapped_column(Text, default=None)
    # Why the last operation failed (shown as a user message, GET /messages).
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)


class VolumeSnapshot(Base):
    __tablename__ = "volume_snapshots"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    volume_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    description: Mapped[str | None] = mapped_column(Text, default=None)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    size: Mapped[int] = mapped_column(Integer)  # GiB, the volume's when taken
    status: Mapped[str] = mapped_column(String(32), default=CREATING, index=True)
    meta: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    provider_location: Mapped[str | None] = mapped_column(Text, default=None)
    error: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=now)
    updated_at: Mapped[datetime] = mapped_column(default=now, onupdate=now)


class VolumeAttachment(Base):
    """A volume on a server: Cinder's attachment and nova's block device mapping in one."""

    __tablename__ = "volume_attachments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    volume_id: Mapped[str] = mapped_column(String(36), index=True)
    server_id: Mapped[str] = mapped_column(String(36), index=True)
    # reserved -> attaching -> attached -> detaching -> (row deleted)
    status: Mapped[str] = mapped_column(String(16), default=RESERVED)
    device: Mapped[str | None] = mapped_column(String(64), default=None)  # /dev/vdb
    boot_index: Mapped[int | None] = mapped_column(Integer, default=None)  # 0: the root disk
    delete_on_termination: Mapped[bool] = mapped_column(default=False)
    tag: Mapped[str | None] = mapped_column(String(60), default=None)
    attach_mode: Mapped[str] = mapped_column(String(2), default="rw")
    attached_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=now)


class VolumeQuota(Base):
    """A project's limit for one resource (volumes, snapshots, gigabytes), set by an admin."""

    __tablename__ = "volume_quotas"
    __table_args__ = (UniqueConstraint("project_id", "resource"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    resource: Mapped[str] = mapped_column(String(64))
    hard_limit: Mapped[int] = mapped_column(Integer)
