"""Image tables: the record, its custom properties, tags and members."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from kumo.db.base import Base, new_id, utcnow


class Image(Base):
    __tablename__ = "images"
    # The image list walks one of these in order and stops after a page (query.py).
    __table_args__ = (
        Index("ix_images_created_at_id", "created_at", "id"),
        Index("ix_images_updated_at_id", "updated_at", "id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    disk_format: Mapped[str | None] = mapped_column(String(32), default=None)
    container_format: Mapped[str | None] = mapped_column(String(32), default=None)
    size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    virtual_size: Mapped[int | None] = mapped_column(BigInteger, default=None)
    checksum: Mapped[str | None] = mapped_column(String(32), default=None)
    os_hash_algo: Mapped[str | None] = mapped_column(String(64), default=None)
    os_hash_value: Mapped[str | None] = mapped_column(String(128), default=None)
    visibility: Mapped[str] = mapped_column(String(16), default="shared", index=True)
    protected: Mapped[bool] = mapped_column(default=False)
    os_hidden: Mapped[bool] = mapped_column(default=False)
    min_disk: Mapped[int] = mapped_column(Integer, default=0)
    min_ram: Mapped[int] = mapped_column(Integer, default=0)
    owner: Mapped[str | None] = mapped_column(String(255), default=None, index=True)
    status: Mapped[str] = mapped_column(String(32), default="queued", index=True)
    # Where the bytes are in the store (file:///...); None until an upload completes.
    location: Mapped[str | None] = mapped_column(Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    properties: Mapped[list[ImageProperty]] = relationship(
        back_populates="image", cascade="all, delete-orphan", lazy="selectin"
    )
    tags: Mapped[list[ImageTag]] = relationship(
        back_populates="image", cascade="all, delete-orphan", lazy="selectin"
    )
    members: Mapped[list[ImageMember]] = relationship(
        back_populates="image", cascade="all, delete-orphan", lazy="selectin"
    )

    def property_dict(self) -> dict[str, str]:
        return {p.name: p.value for p in self.properties}

    def tag_list(self) -> list[str]:
        return sorted(t.value for t in self.tags)


class ImageProperty(Base):
    __tablename__ = "image_properties"
    __table_args__ = (
        UniqueConstraint("image_id", "name"), Index("ix_image_properties_name", "name"),
    )

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(255))
    value: Mapped[str] = mapped_column(Text)
    image: Mapped[Image] = relationship(back_populates="properties")


class ImageTag(Base):
    __tablename__ = "image_tags"
    __table_args__ = (UniqueConstraint("image_id", "value"), Index("ix_image_tags_value", "value"))

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    value: Mapped[str] = mapped_column(String(255))
    image: Mapped[Image] = relationship(back_populates="tags")


class ImageMember(Base):
    __tablename__ = "image_members"
    __table_args__ = (UniqueConstraint("image_id", "member"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    image_id: Mapped[str] = mapped_column(ForeignKey("images.id", ondelete="CASCADE"), index=True)
    member: Mapped[str] = mapped_column(String(255), index=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    image: Mapped[Image] = relationship(back_populates="members")


class ImageTask(Base):
    """A Glance task: what an image import did (`/v2/tasks`, `/v2/images/{id}/tasks`).

    Not tied to the image by a foreign key: a task outlives the image it imported, as
    in Glance, until it expires.
    """

    __tablename__ = "image_tasks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    type: Mapped[str] = mapped_column(String(32), default="api_image_import")
    status: Mapped[str] = mapped_column(String(16), default="pending")  # -> processing ->
    input: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)  # success | failure
    result: Mapped[dict[str, object] | None] = mapped_column(JSON, default=None)
    message: Mapped[str] = mapped_column(Text, default="")
    owner: Mapped[str] = mapped_column(String(255), index=True)
    image_id: Mapped[str | None] = mapped_column(String(36), default=None, index=True)
    request_id: Mapped[str | None] = mapped_column(String(64), default=None)
    user_id: Mapped[str | None] = mapped_column(String(64), default=None)
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
