"""Metadata of volumes and snapshots: `/metadata` and `/metadata/{key}`, as Cinder serves them."""

from __future__ import annotations

from typing import Any, Protocol

from kumo.errors import BadRequest, NotFound
from kumo.volume.volumes import check_metadata


class HasMetadata(Protocol):
    meta: dict[str, str]


def set_all(record: HasMetadata, body: Any, *, replace: bool) -> dict[str, str]:
    """POST merges the given keys in; PUT replaces the whole set."""
    meta = check_metadata(body.get("metadata") if isinstance(body, dict) else None)
    record.meta = meta if replace else {**(record.meta or {}), **meta}
    return dict(record.meta)


def get_item(record: HasMetadata, key: str) -> dict[str, str]:
    meta = record.meta or {}
    if key not in meta:
        raise NotFound(f"Metadata item was not found: {key}")
    return {key: meta[key]}


def set_item(record: HasMetadata, key: str, body: Any) -> dict[str, str]:
    item = body.get("meta") if isinstance(body, dict) else None
    if not isinstance(item, dict) or len(item) != 1 or key not in item:
        raise BadRequest("Request body and URI mismatch")
    record.meta = {**(record.meta or {}), **check_metadata(item)}
    return {key: record.meta[key]}


def delete_item(record: HasMetadata, key: str) -> None:
    meta = dict(record.meta or {})
    if key not in meta:
        raise NotFound(f"Metadata item was not found: {key}")
    del meta[key]
    record.meta = meta
