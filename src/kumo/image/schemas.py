"""The JSON shapes of the image API: records as clients see them, and the schemas.

glanceclient builds its command-line options from `/v2/schemas/image` and checks
records against it (warlock), so the field list and types follow Glance's.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from kumo.image.lifecycle import CONTAINER_FORMATS, DISK_FORMATS, STATUSES, VISIBILITIES
from kumo.image.models import Image, ImageMember

UUID_PATTERN = (
    "^([0-9a-fA-F]){8}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){4}-([0-9a-fA-F]){12}$"
)

# Fields the API computes; a client may never set them.
READ_ONLY = frozenset(
    {
        "id",
        "status",
        "checksum",
        "os_hash_algo",
        "os_hash_value",
        "size",
        "virtual_size",
        "created_at",
        "updated_at",
        "self",
        "file",
        "schema",
        "direct_url",
        "stores",
    }
)
# Names Glance keeps for itself (its database columns), refused as custom properties.
RESERVED = frozenset({"deleted", "deleted_at", "location", "locations", "owner_id"})
# Glance keeps every property under this prefix for itself (import state, stores).
RESERVED_PREFIX = "os_glance"


def is_reserved(name: str) -> bool:
    return name in RESERVED or name.startswith(RESERVED_PREFIX)
# Fields a client sets through the API (the rest of an image record is custom properties).
WRITABLE_BASE = frozenset(
    {
        "name",
        "disk_format",
        "container_format",
        "visibility",
        "protected",
        "os_hidden",
        "min_disk",
        "min_ram",
        "owner",
        "tags",
    }
)
BASE_FIELDS = READ_ONLY | WRITABLE_BASE


def timestamp(value: datetime) -> str:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ")


def image_view(image: Image) -> dict[str, Any]:
    """An image as Glance shows it: base fields, then custom properties at the top level."""
    return record_view({name: getattr(image, name) for name in COLUMNS},
                       image.property_dict(), image.tag_list())


# The images columns a view shows (`location` only says whether there are stores).
COLUMNS = ("id", "name", "disk_format", "container_format", "visibility", "size",
           "virtual_size", "status", "checksum", "protected", "min_ram", "min_disk", "owner",
           "os_hidden", "os_hash_algo", "os_hash_value", "created_at", "updated_at", "location")


def record_view(columns: Mapping[Any, Any], properties: Mapping[str, str],
                tags: Iterable[str]) -> dict[str, Any]:
    """`image_view` from plain values: an images row (`COLUMNS`), its properties and tags."""
    view: dict[str, Any] = dict(properties)
    image_id = columns["id"]
    view.update(
        {
            "id": image_id,
            "name": columns["name"],
            "disk_format": columns["disk_format"],
            "container_format": columns["container_format"],
            "visibility": columns["visibility"],
            "size": columns["size"],
            "virtual_size": columns["virtual_size"],
            "status": columns["status"],
            "checksum": columns["checksum"],
            "protected": columns["protected"],
            "min_ram": columns["min_ram"],
            "min_disk": columns["min_disk"],
            "owner": columns["owner"],
            "os_hidden": columns["os_hidden"],
            "os_hash_algo": columns["os_hash_algo"],
            "os_hash_value": columns["os_hash_value"],
            "created_at": timestamp(columns["created_at"]),
            "updated_at": timestamp(columns["updated_at"]),
            "tags": sorted(tags),
            "self": f"/v2/images/{image_id}",
            "file": f"/v2/images/{image_id}/file",
            "schema": "/v2/schemas/image",
        }
    )
    if columns["location"]:
        # Glance with stores (kumo answers /v2/info/stores) says where the data is;
        # tempest's import waiter compares it with the store list.
        view["stores"] = "file"
    return view


def member_view(member: ImageMember) -> dict[str, Any]:
    return {
        "image_id": member.image_id,
        "member_id": member.member,
        "status": member.status,
        "created_at": timestamp(member.created_at),
        "updated_at": timestamp(member.updated_at),
        "schema": "/v2/schemas/member",
    }


def _nullable(kind: str) -> list[str]:
    return ["null", kind]


def image_schema() -> dict[str, Any]:
    """`GET /v2/schemas/image`."""
    properties: dict[str, Any] = {
        "id": {
            "type": "string",
            "pattern": UUID_PATTERN,
            "description": "An identifier for the image",
        },
        "name": {
            "type": _nullable("string"),
            "maxLength": 255,
            "description": "Descriptive name for the image",
        },
        "status": {
            "type": "string",
            "readOnly": True,
            "enum": list(STATUSES),
            "description": "Status of the image",
        },
        "visibility": {
            "type": "string",
            "enum": list(VISIBILITIES),
            "description": "Scope of image accessibility",
        },
        "protected": {"type": "boolean", "description": "If true, image will not be deletable."},
        "os_hidden": {
            "type": "boolean",
            "description": "If true, image will not appear in default image list response.",
        },
        "checksum": {
            "type": _nullable("string"),
            "readOnly": True,
            "maxLength": 32,
            "description": "md5 hash of image contents.",
        },
        "os_hash_algo": {
            "type": _nullable("string"),
            "readOnly": True,
            "maxLength": 64,
            "description": "Algorithm to calculate the os_hash_value",
        },
        "os_hash_value": {
            "type": _nullable("string"),
            "readOnly": True,
            "maxLength": 128,
            "description": "Hexdigest of the image contents using the algorithm "
            "specified by the os_hash_algo",
        },
        "owner": {
            "type": _nullable("string"),
            "maxLength": 255,
            "description": "Owner of the image",
        },
        "size": {
            "type": _nullable("integer"),
            "readOnly": True,
            "description": "Size of image file in bytes",
        },
        "virtual_size": {
            "type": _nullable("integer"),
            "readOnly": True,
            "description": "Virtual size of image in bytes",
        },
        "container_format": {
            "type": _nullable("string"),
            "enum": [None, *CONTAINER_FORMATS],
            "description": "Format of the container",
        },
        "disk_format": {
            "type": _nullable("string"),
            "enum": [None, *DISK_FORMATS],
            "description": "Format of the disk",
        },
        "created_at": {
            "type": "string",
            "readOnly": True,
            "description": "Date and time of image registration",
        },
        "updated_at": {
            "type": "string",
            "readOnly": True,
            "description": "Date and time of the last image modification",
        },
        "tags": {
            "type": "array",
            "items": {"type": "string", "maxLength": 255},
            "description": "List of strings related to the image",
        },
        "direct_url": {
            "type": "string",
            "readOnly": True,
            "description": "URL to access the image file kept in external store",
        },
        "min_ram": {
            "type": "integer",
            "minimum": 0,
            "description": "Amount of ram (in MB) required to boot image.",
        },
        "min_disk": {
            "type": "integer",
            "minimum": 0,
            "description": "Amount of disk space (in GB) required to boot image.",
        },
        "self": {"type": "string", "readOnly": True, "description": "An image self url"},
        "file": {"type": "string", "readOnly": True, "description": "An image file url"},
        "stores": {
            "type": "string",
            "readOnly": True,
            "description": "Store in which image data resides.",
        },
        "schema": {"type": "string", "readOnly": True, "description": "An image schema url"},
        # Common (non-base) properties, as Glance's schema-image.json lists them.
        "kernel_id": {
            "type": _nullable("string"),
            "pattern": UUID_PATTERN,
            "is_base": False,
            "description": "ID of image stored in Glance that should be used as the "
            "kernel when booting an AMI-style image.",
        },
        "ramdisk_id": {
            "type": _nullable("string"),
            "pattern": UUID_PATTERN,
            "is_base": False,
            "description": "ID of image stored in Glance that should be used as the "
            "ramdisk when booting an AMI-style image.",
        },
        "instance_uuid": {
            "type": "string",
            "is_base": False,
            "description": "Metadata which can be used to record which instance "
            "this image is associated with.",
        },
        "architecture": {
            "type": "string",
            "is_base": False,
            "description": "Operating system architecture",
        },
        "os_distro": {
            "type": "string",
            "is_base": False,
            "description": "Common name of operating system distribution",
        },
        "os_version": {
            "type": "string",
            "is_base": False,
            "description": "Operating system version as specified by the distributor",
        },
    }
    return {
        "name": "image",
        "properties": properties,
        "additionalProperties": {"type": "string"},
        "links": [
            {"rel": "self", "href": "{self}"},
            {"rel": "enclosure", "href": "{file}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def images_schema() -> dict[str, Any]:
    """`GET /v2/schemas/images`."""
    return {
        "name": "images",
        "properties": {
            "images": {"type": "array", "items": image_schema()},
            "schema": {"type": "string"},
            "first": {"type": "string"},
            "next": {"type": "string"},
        },
        "links": [
            {"rel": "first", "href": "{first}"},
            {"rel": "next", "href": "{next}"},
            {"rel": "describedby", "href": "{schema}"},
        ],
    }


def member_schema() -> dict[str, Any]:
    """`GET /v2/schemas/member`."""
    return {
        "name": "member",
        "properties": {
            "created_at": {
                "type": "string",
                "description": "Date and time of image member creation",
            },
            "image_id": {
                "type": "string",
                "pattern": UUID_PATTERN,
                "description": "An identifier for the image",
            },
            "member_id": {
                "type": "string",
                "description": "An identifier for the image member (tenantId)",
            },
            "status": {
                "type": "string",
                "enum": ["pending", "accepted", "rejected"],
                "description": "The status of this image member",
            },
            "updated_at": {
                "type": "string",
                "description": "Date and time of last modification of image member",
            },
            "schema": {"type": "string", "readOnly": True},
        },
    }


def members_schema() -> dict[str, Any]:
    """`GET /v2/schemas/members`."""
    return {
        "name": "members",
        "properties": {
            "members": {"type": "array", "items": member_schema()},
            "schema": {"type": "string"},
        },
        "links": [{"rel": "describedby", "href": "{schema}"}],
    }
