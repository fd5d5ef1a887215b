"""`/v2/schemas/metadefs/…`: the JSON schemas of metadef documents, as Glance names them."""

from __future__ import annotations

from typing import Any

_STAMP = {"type": "string", "readOnly": True, "format": "date-time"}
_PROPERTY_TYPE = {"type": "string",
                  "enum": ["array", "boolean", "integer", "number", "object", "string", None]}
_PROPERTY: dict[str, Any] = {
    "type": "object",
    "required": ["title", "type"],
    "properties": {
        "name": {"type": "string", "maxLength": 80},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "operators": {"type": "array", "items": {"type": "string"}},
        "type": _PROPERTY_TYPE,
        "default": {},
        "readonly": {"type": "boolean"},
        "minimum": {"type": "number"},
        "maximum": {"type": "number"},
        "maxLength": {"type": "integer", "minimum": 0},
        "minLength": {"type": "integer", "minimum": 0},
        "pattern": {"type": "string", "format": "regex"},
        "enum": {"type": "array"},
        "items": {"type": "object"},
    },
}
_ASSOCIATION: dict[str, Any] = {
    "name": "resource_type_association",
    "properties": {
        "name": {"type": "string", "maxLength": 80,
                 "description": "Resource type names should be aligned with Heat resource "
                                "types whenever possible."},
        "prefix": {"type": "string", "maxLength": 80,
                   "description": "Prefix for any properties in the namespace when applied "
                                  "to this resource type (hw_ for images, hw: for flavors)."},
        "properties_target": {"type": "string", "maxLength": 80},
        "created_at": _STAMP,
        "updated_at": _STAMP,
    },
    "required": ["name"],
    "additionalProperties": False,
}
_OBJECT: dict[str, Any] = {
    "name": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 80},
        "description": {"type": "string"},
        "required": {"type": "array", "items": {"type": "string"}},
        "properties": {"type": "object", "additionalProperties": _PROPERTY},
        "schema": {"type": "string", "readOnly": True},
        "self": {"type": "string", "readOnly": True},
        "created_at": _STAMP,
        "updated_at": _STAMP,
    },
    "required": ["name"],
    "additionalProperties": False,
}
_TAG: dict[str, Any] = {
    "name": "tag",
    "properties": {"name": {"type": "string", "maxLength": 80},
                   "created_at": _STAMP, "updated_at": _STAMP},
    "required": ["name"],
    "additionalProperties": False,
}
_NAMESPACE: dict[str, Any] = {
    "name": "namespace",
    "properties": {
        "namespace": {"type": "string", "maxLength": 80,
                      "description": "The unique namespace text."},
        "display_name": {"type": "string", "maxLength": 80},
        "description": {"type": "string", "maxLength": 500},
        "visibility": {"type": "string", "enum": ["public", "private"]},
        "protected": {"type": "boolean",
                      "description": "If true, the namespace cannot be deleted."},
        "owner": {"type": "string", "maxLength": 255},
        "resource_type_associations": {"type": "array", "items": _ASSOCIATION},
        "properties": {"type": "object", "additionalProperties": _PROPERTY},
        "objects": {"type": "array", "items": _OBJECT},
        "tags": {"type": "array", "items": _TAG},
        "schema": {"type": "string", "readOnly": True},
        "self": {"type": "string", "readOnly": True},
        "created_at": _STAMP,
        "updated_at": _STAMP,
    },
    "required": ["namespace"],
    "additionalProperties": False,
}


def _collection(name: str, key: str, item: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "properties": {key: {"type": "array", "items": item},
                       "first": {"type": "string"}, "next": {"type": "string"},
                       "schema": {"type": "string"}},
        "links": [{"rel": "first", "href": "{first}"}, {"rel": "next", "href": "{next}"},
                  {"rel": "describedby", "href": "{schema}"}],
    }


SCHEMAS: dict[str, dict[str, Any]] = {
    "namespace": _NAMESPACE,
    "namespaces": _collection("namespaces", "namespaces", _NAMESPACE),
    "resource_type": _ASSOCIATION,
    "resource_types": _collection("resource_type_associations",
                                  "resource_type_associations", _ASSOCIATION),
    "object": _OBJECT,
    "objects": _collection("objects", "objects", _OBJECT),
    "property": {"name": "property", **_PROPERTY},
    "properties": {"name": "properties", "properties": {
        "properties": {"type": "object", "additionalProperties": _PROPERTY}}},
    "tag": _TAG,
    "tags": _collection("tags", "tags", _TAG),
}
