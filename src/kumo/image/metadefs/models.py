"""Metadef tables: a namespace row holds its definitions; resource types are shared."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from kumo.db.base import Base, utcnow


class MetadefNamespace(Base):
    """One namespace with its properties, objects, tags and resource type associations.

    The definitions are small documents read and written with their namespace, so they
    live in the row (JSON) rather than in tables of their own.
    """

    __tablename__ = "metadef_namespaces"

    namespace: Mapped[str] = mapped_column(String(80), primary_key=True)
    display_name: Mapped[str] = mapped_column(String(80), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    visibility: Mapped[str] = mapped_column(String(32), default="private")
    protected: Mapped[bool] = mapped_column(default=False)
    owner: Mapped[str | None] = mapped_column(String(255), default=None)
    # {name: JSON schema of the property}
    properties: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    # [{name, description, required, properties, created_at, updated_at}]
    objects: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # [{name, created_at, updated_at}]
    tags: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    # [{name, prefix, properties_target, created_at, updated_at}]
    resource_types: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class MetadefResourceType(Base):
    """A kind of resource definitions apply to (OS::Glance::Image, OS::Nova::Flavor, ...)."""

    __tablename__ = "metadef_resource_types"

    name: Mapped[str] = mapped_column(String(80), primary_key=True)
    protected: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
