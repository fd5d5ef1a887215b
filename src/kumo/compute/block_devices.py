"""Block device mappings (nova's `block_device_mapping_v2`) at server create.

What the `openstack` CLI sends:

- `--image IMG`: one mapping, the image as the local root disk (what kumo always did);
- `--volume VOL`: the volume as the root disk (`source_type volume`, boot_index 0);
- `--boot-from-volume N --image IMG`: a new N GB volume made from the image, as root;
- `--snapshot SNAP`: a new volume made from a volume snapshot, as root;
- `--block-device ...`: any of these, plus volumes (existing, blank, from an image or a
  snapshot) attached as data disks.

Volumes to be made are created here (status `creating`, quota counted now) and
reserved for the server with the existing ones; the compute job fills them before it
starts the guest. Local disks other than the image root (ephemeral, swap) are refused:
kumo has none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.compute.models import Server
from kumo.config import Settings
from kumo.errors import BadRequest
from kumo.volume import attachments
from kumo.volume import volumes as cinder
from kumo.volume.images import VolumeImages

SOURCES = ("image", "volume", "snapshot", "blank")


@dataclass(frozen=True)
class BlockDevice:
    source_type: str
    destination_type: str
    uuid: str | None
    boot_index: int | None
    volume_size: int | None
    delete_on_termination: bool
    tag: str | None

    @property
    def is_root(self) -> bool:
        return self.boot_index == 0

    @property
    def is_local_image(self) -> bool:
        return self.source_type == "image" and self.destination_type == "local"


def _boot_index(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        index = int(value)
    except (TypeError, ValueError):
        raise BadRequest(f"Invalid input for field/attribute boot_index: {value!r}") from None
    return None if index < 0 else index


def _one(raw: Any, version: tuple[int, int]) -> BlockDevice:
    if not isinstance(raw, dict):
        raise BadRequest("Invalid input for field/attribute block_device_mapping_v2")
    source = raw.get("source_type", "volume" if raw.get("volume_id") else None)
    if source not in SOURCES:
        raise BadRequest(f"Invalid input for field/attribute source_type: {source!r}; one of "
                         f"{', '.join(SOURCES)}")
    destination = raw.get("destination_type") or ("local" if source in ("image", "blank")
                                                   else "volume")
    if destination not in ("local", "volume"):
        raise BadRequest(f"Invalid input for field/attribute destination_type: {destination!r}")
    uuid = raw.get("uuid") or raw.get("volume_id") or raw.get("snapshot_id") or \
        raw.get("image_id")
    if source != "blank" and not isinstance(uuid, str):
        raise BadRequest(f"Block device mapping of source {source} needs a uuid")
    size = raw.get("volume_size")
    if size is not None:
        size = cinder.positive_size(size, "volume_size")
    tag = raw.get("tag")
    if tag is not None and version < (2, 42):
        raise BadRequest("Additional properties are not allowed ('tag' was unexpected)")
    delete = raw.get("delete_on_termination")
    if delete is not None and not isinstance(delete, bool):
        if str(delete).lower() not in ("true", "false", "1", "0"):
            raise BadRequest("Invalid input for field/attribute delete_on_termination")
        delete = str(delete).lower() in ("true", "1")
    device = BlockDevice(str(source), str(destination), uuid if isinstance(uuid, str) else None,
                         _boot_index(raw.get("boot_index")), size, bool(delete), tag)
    if device.destination_type == "local" and not device.is_local_image:
        raise BadRequest("kumo has no ephemeral or swap disks: local block devices other than "
                         "the image as root disk are not supported; use a volume")
    if device.is_local_image and not device.is_root:
        raise BadRequest("An image as a local disk must be the root disk (boot_index 0)")
    if device.source_type in ("image", "blank") and device.destination_type == "volume" and \
            device.volume_size is None:
        raise BadRequest(f"Images with destination_type 'volume' need to have a non-zero size "
                         f"specified (block device mapping {device.uuid or 'blank'})")
    return device


def parse(spec: dict[str, Any], version: tuple[int, int],
          image_properties: dict[str, str] | None = None) -> list[BlockDevice]:
    """The request's mappings, validated, plus those an image brings (a volume-backed
    server's snapshot carries `block_device_mapping` as nova writes it)."""
    if spec.get("block_device_mapping"):
        raise BadRequest("The legacy block_device_mapping is not supported; use "
                         "block_device_mapping_v2")
    raw = spec.get("block_device_mapping_v2") or []
    if not isinstance(raw, list):
        raise BadRequest("Invalid input for field/attribute block_device_mapping_v2")
    devices = [_one(item, version) for item in raw]
    from_image = image_properties or {}
    if from_image.get("block_device_mapping") and \
            str(from_image.get("bdm_v2", "")).lower() == "true":
        try:
            mapped = json.loads(from_image["block_device_mapping"])
        except ValueError:
            raise BadRequest("The image's block_device_mapping property is not JSON") from None
        if not isinstance(mapped, list):
            raise BadRequest("The image's block_device_mapping property is not a list")
        # The image's mappings win for the boot disk; the request's image-root goes.
        devices = [d for d in devices if not d.is_local_image] + \
            [_one(item, version) for item in mapped]
    roots = [d for d in devices if d.is_root]
    if len(roots) > 1:
        raise BadRequest("Boot sequence for the instance and image/block device mapping "
                         "combination is not valid: more than one boot_index 0")
    return devices


def root_of(devices: list[BlockDevice]) -> BlockDevice | None:
    return next((d for d in devices if d.is_root), None)


def is_volume_backed(devices: list[BlockDevice]) -> bool:
    root = root_of(devices)
    return root is not None and root.destination_type == "volume"


def reserve_volumes(session: Session, context: RequestContext, settings: Settings,
                    server: Server, devices: list[BlockDevice], images: VolumeImages) -> None:
    """Make (status creating) and reserve the server's volumes, in the caller's session."""
    local_root = not is_volume_backed(devices)
    for device in devices:
        if device.destination_type != "volume":
            continue
        if device.source_type == "volume":
            assert device.uuid is not None
            attachments.reserve(session, context, device.uuid, server.id,
                                boot_index=device.boot_index,
                                delete_on_termination=device.delete_on_termination,
                                tag=device.tag, has_local_root=local_root)
            continue
        body: dict[str, Any] = {"name": "", "size": device.volume_size}
        if device.source_type == "image":
            body["imageRef"] = device.uuid
        elif device.source_type == "snapshot":
            body["snapshot_id"] = device.uuid
        volume, _ = cinder.create_volume(session, context, settings, {"volume": body}, images)
        attachments.reserve_new(session, volume, server.id, boot_index=device.boot_index,
                                delete_on_termination=device.delete_on_termination,
                                tag=device.tag, has_local_root=local_root)


class VolumeReserver:
    """What server create calls to make and reserve its volumes (Block Storage in this
    process)."""

    def __init__(self, settings: Settings, images: VolumeImages) -> None:
        self.settings = settings
        self.images = images

    def __call__(self, session: Session, context: RequestContext, server: Server,
                 devices: list[BlockDevice]) -> None:
        reserve_volumes(session, context, self.settings, server, devices, self.images)
