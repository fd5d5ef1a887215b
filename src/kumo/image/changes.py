"""Checking what a client asks to set: create bodies and JSON-patch documents.

Every value is checked before anything is applied, and the caller's session is
rolled back on any error, so a bad request never leaves a partly changed image.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from kumo.errors import BadRequest, Conflict, Forbidden, PayloadTooLarge
from kumo.image import lifecycle
from kumo.image.models import Image, ImageProperty, ImageTag
from kumo.image.schemas import READ_ONLY, UUID_PATTERN, WRITABLE_BASE, is_reserved

MAX_NAME = 255
MAX_PROPERTY_VALUE = 65535
MAX_TAGS = 128  # Glance's image_tag_quota
MAX_PROPERTIES = 128  # Glance's image_property_quota
PATCH_OPS = ("add", "replace", "remove")


def check_name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest(f"Invalid value for name: {value!r} is not a string")
    if len(value) > MAX_NAME:
        raise BadRequest(f"Invalid value for name: longer than {MAX_NAME} characters")
    return value


def check_tag(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise BadRequest(f"Invalid tag {value!r}: tags are non-empty strings")
    if len(value) > 255:
        raise BadRequest("Invalid tag: longer than 255 characters")
    return value


def check_tags(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise BadRequest("tags must be a list of strings")
    tags = sorted({check_tag(tag) for tag in value})
    if len(tags) > MAX_TAGS:
        raise PayloadTooLarge(f"Maximum number of tags exceeded ({MAX_TAGS})")
    return tags


def _check_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadRequest(f"Invalid value for {name}: {value!r} is not a whole number >= 0")
    if value > 2**31 - 1:
        raise BadRequest(f"Invalid value for {name}: {value} is too large")
    return value


def _check_bool(name: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise BadRequest(f"Invalid value for {name}: {value!r} is not a boolean")
    return value


def check_base(name: str, value: Any) -> Any:
    """A writable base field's value, checked; raises 400 with what was wrong."""
    if name == "name":
        return check_name(value)
    if name == "disk_format":
        return lifecycle.check_disk_format(value)
    if name == "container_format":
        return lifecycle.check_container_format(value)
    if name == "visibility":
        return lifecycle.check_visibility(value)
    if name in ("protected", "os_hidden"):
        return _check_bool(name, value)
    if name in ("min_disk", "min_ram"):
        return _check_int(name, value)
    if name == "owner":
        if value is not None and (not isinstance(value, str) or len(value) > 255):
            raise BadRequest(f"Invalid value for owner: {value!r}")
        return value
    if name == "tags":
        return check_tags(value)
    raise BadRequest(f"{name} is not a writable attribute")


def check_property(name: str, value: Any) -> str:
    """A custom property: Glance's schema says additionalProperties are strings."""
    if not name or len(name) > 255:
        raise BadRequest(f"Invalid property name {name!r}: 1 to 255 characters")
    if name in READ_ONLY:
        raise Forbidden(f"Attribute '{name}' is read-only.")
    if is_reserved(name):
        raise Forbidden(f"Attribute '{name}' is reserved.")
    if not isinstance(value, str):
        raise BadRequest(
            f"Invalid value for property {name!r}: {value!r} is not a string "
            "(custom image properties must be strings)"
        )
    if len(value) > MAX_PROPERTY_VALUE:
        raise BadRequest(f"Invalid value for property {name!r}: longer than {MAX_PROPERTY_VALUE}")
    if name in ("kernel_id", "ramdisk_id") and not re.match(UUID_PATTERN, value):
        raise BadRequest(f"Invalid value for {name}: {value!r} is not an image id")
    return value


@dataclass
class CreateRequest:
    image_id: str | None = None
    base: dict[str, Any] = field(default_factory=dict)
    properties: dict[str, str] = field(default_factory=dict)


def parse_create(body: dict[str, Any]) -> CreateRequest:
    """Split and check a `POST /v2/images` body."""
    request = CreateRequest()
    for name, value in body.items():
        if name == "id":
            if not isinstance(value, str) or not re.match(UUID_PATTERN, value):
                raise BadRequest(f"Invalid id {value!r}: expected a UUID")
            request.image_id = value.lower()
        elif name in WRITABLE_BASE:
            request.base[name] = check_base(name, value)
        elif name in READ_ONLY:
            raise Forbidden(f"Attribute '{name}' is read-only.")
        else:
            request.properties[name] = check_property(name, value)
    if len(request.properties) > MAX_PROPERTIES:
        raise PayloadTooLarge(f"Maximum number of image properties exceeded ({MAX_PROPERTIES})")
    return request


@dataclass(frozen=True)
class PatchOp:
    op: str
    attr: str
    value: Any = None


def _unescape(segment: str) -> str:
    return segment.replace("~1", "/").replace("~0", "~")


def parse_patch(document: Any, draft10: bool = False) -> list[PatchOp]:
    """Check an `application/openstack-images-v2.1-json-patch` document.

    `draft10`: the older `…-v2.0-json-patch` shape, `{"replace": "/name", "value": …}`
    (the op is the key), which Glance still accepts.
    """
    if not isinstance(document, list):
        raise BadRequest("A JSON-patch document must be a list of operations")
    ops = []
    for raw in document:
        if not isinstance(raw, dict):
            raise BadRequest("Each JSON-patch operation must be an object")
        if draft10:
            raw = _from_draft10(raw)
        op = raw.get("op")
        if op not in PATCH_OPS:
            raise BadRequest(
                f"Invalid JSON-patch operation {op!r}: expected add, replace or remove"
            )
        path = raw.get("path")
        if not isinstance(path, str) or not path.startswith("/") or len(path) < 2:
            raise BadRequest(f"Invalid JSON-patch path {path!r}: expected '/<attribute>'")
        segments = path[1:].split("/")
        if len(segments) != 1:
            if segments[0] == "locations":
                raise Forbidden("Image locations cannot be changed in kumo")
            raise BadRequest(f"Invalid JSON-patch path {path!r}: nested paths are not supported")
        attr = _unescape(segments[0])
        if op != "remove" and "value" not in raw:
            raise BadRequest(f"JSON-patch operation {op!r} on {path!r} needs a value")
        unexpected = set(raw) - {"op", "path", "value"}
        if unexpected:
            raise BadRequest(
                f"Unexpected keys in JSON-patch operation: {', '.join(sorted(unexpected))}"
            )
        ops.append(PatchOp(op=op, attr=attr, value=raw.get("value")))
    return ops


def _from_draft10(raw: dict[str, Any]) -> dict[str, Any]:
    named = [op for op in PATCH_OPS if op in raw]
    if len(named) != 1:
        raise BadRequest("Each JSON-patch operation must name one of add, replace or remove")
    op = named[0]
    converted = {"op": op, "path": raw[op]}
    unexpected = set(raw) - {op, "value"}
    if unexpected:
        raise BadRequest(
            f"Unexpected keys in JSON-patch operation: {', '.join(sorted(unexpected))}"
        )
    if "value" in raw:
        converted["value"] = raw["value"]
    return converted


def set_tags(image: Image, tags: list[str]) -> None:
    """Make the image's tags exactly `tags`, keeping rows that stay (unique per image)."""
    wanted = set(tags)
    for tag in [t for t in image.tags if t.value not in wanted]:
        image.tags.remove(tag)
    present = {t.value for t in image.tags}
    image.tags.extend(ImageTag(value=tag) for tag in sorted(wanted - present))


def apply_patch(image: Image, ops: list[PatchOp]) -> set[str]:
    """Apply checked ops to `image` in memory; return the base fields that changed."""
    props = {p.name: p for p in image.properties}
    changed: set[str] = set()
    for op in ops:
        attr = op.attr
        if attr in READ_ONLY:
            raise Forbidden(f"Attribute '{attr}' is read-only.")
        if is_reserved(attr):
            raise Forbidden(f"Attribute '{attr}' is reserved.")
        if attr in WRITABLE_BASE:
            if op.op == "remove":
                raise Forbidden(f"Properties {attr} cannot be removed: it is a base attribute")
            value = check_base(attr, op.value)
            if attr == "tags":
                set_tags(image, value)
            else:
                setattr(image, attr, value)
            changed.add(attr)
            continue
        if op.op == "remove":
            if attr not in props:
                raise Conflict(f"Property {attr} does not exist.")
            image.properties.remove(props.pop(attr))
            continue
        if op.op == "replace" and attr not in props:
            raise Conflict(f"Property {attr} does not exist.")
        value = check_property(attr, op.value)
        if attr in props:
            props[attr].value = value
        else:
            props[attr] = ImageProperty(name=attr, value=value)
            image.properties.append(props[attr])
    if len(props) > MAX_PROPERTIES:
        raise PayloadTooLarge(f"Maximum number of image properties exceeded ({MAX_PROPERTIES})")
    return changed
