"""The image status machine, as Glance's domain model defines it.

queued -> saving -> active -> deactivated -> active ...; a failed upload goes
back to queued (v2 no longer uses `killed`). Deleting is allowed from anywhere.
"""

from __future__ import annotations

from kumo.errors import BadRequest, Conflict

QUEUED = "queued"
SAVING = "saving"
ACTIVE = "active"
DEACTIVATED = "deactivated"
DELETED = "deleted"
KILLED = "killed"
UPLOADING = "uploading"
IMPORTING = "importing"
PENDING_DELETE = "pending_delete"

STATUSES = (
    QUEUED,
    SAVING,
    ACTIVE,
    KILLED,
    DELETED,
    UPLOADING,
    IMPORTING,
    PENDING_DELETE,
    DEACTIVATED,
)

TRANSITIONS: dict[str, frozenset[str]] = {
    QUEUED: frozenset({SAVING, UPLOADING, IMPORTING, ACTIVE, DELETED}),
    SAVING: frozenset({ACTIVE, KILLED, DELETED, QUEUED}),
    UPLOADING: frozenset({IMPORTING, QUEUED, DELETED}),
    IMPORTING: frozenset({ACTIVE, DELETED, QUEUED}),
    ACTIVE: frozenset({PENDING_DELETE, DELETED, DEACTIVATED}),
    DEACTIVATED: frozenset({ACTIVE, DELETED}),
    KILLED: frozenset({DELETED}),
    PENDING_DELETE: frozenset({DELETED}),
    DELETED: frozenset(),
}

# Every disk format kumo accepts boots: QEMU reads vhd as `vpc`, ploop as `parallels`
# (`kumo.diskformat.qemuimg.driver`). Glance's aki and ari are a bare kernel and
# ramdisk for AMI-style boots, which kumo does not do: refused at create (as a
# Glance whose operator left them out of `disk_formats`).
DISK_FORMATS = (
    "ami",
    "vhd",
    "vhdx",
    "vmdk",
    "raw",
    "qcow2",
    "vdi",
    "iso",
    "ploop",
)
NOT_BOOTABLE = {"aki": "a kernel", "ari": "a ramdisk"}
CONTAINER_FORMATS = ("ami", "ari", "aki", "bare", "ovf", "ova", "docker", "compressed")
VISIBILITIES = ("public", "private", "shared", "community")
MEMBER_STATUSES = ("pending", "accepted", "rejected")


def can_transition(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, frozenset())


def check_transition(current: str, new: str) -> None:
    """Raise 409 (Glance's wording) unless `current` -> `new` is allowed."""
    if not can_transition(current, new):
        raise Conflict(f"Image status transition from {current} to {new} is not allowed")


def check_upload_allowed(
    status: str, disk_format: str | None, container_format: str | None
) -> None:
    """Data may be uploaded only to a queued image whose two formats are set."""
    if status != QUEUED:
        raise Conflict(
            f"Image status transition from {status} to {SAVING} is not allowed; "
            "data can only be uploaded to a queued image"
        )
    if not disk_format or not container_format:
        raise BadRequest(
            "Properties disk_format, container_format must be set prior to saving data."
        )


def check_disk_format(value: object) -> str | None:
    if value is None:
        return None
    if isinstance(value, str) and value in NOT_BOOTABLE:
        raise BadRequest(
            f"Invalid value {value!r} for disk_format: {value} is {NOT_BOOTABLE[value]} for "
            "AMI-style boots, which kumo does not do; upload a whole bootable disk "
            f"({', '.join(DISK_FORMATS)})"
        )
    if not isinstance(value, str) or value not in DISK_FORMATS:
        raise BadRequest(
            f"Invalid value {value!r} for disk_format; expected one of {', '.join(DISK_FORMATS)}"
        )
    return value


def check_container_format(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in CONTAINER_FORMATS:
        raise BadRequest(
            f"Invalid value {value!r} for container_format; "
            f"expected one of {', '.join(CONTAINER_FORMATS)}"
        )
    return value


def check_visibility(value: object) -> str:
    if not isinstance(value, str) or value not in VISIBILITIES:
        raise BadRequest(
            f"Invalid visibility value {value!r}; expected one of {', '.join(VISIBILITIES)}"
        )
    return value


def check_member_status(value: object) -> str:
    if not isinstance(value, str) or value not in MEMBER_STATUSES:
        raise BadRequest(
            f"Invalid member status {value!r}; expected one of {', '.join(MEMBER_STATUSES)}"
        )
    return value
