"""Volume attachments: what nova asks of Cinder to put a volume on a server and take it
off again, as record changes (compute calls these in-process, in its own sessions).

available -> reserved (attachment made) -> attaching -> in-use (attachment attached);
in-use -> detaching -> available (attachment gone). A failed attach or detach goes
back to where it started. The device name is the next free `/dev/vdX` of the
server, as nova picks it (the guest names disks in the order it finds them).
"""

from __future__ import annotations

import string

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.errors import BadRequest, NotFound
from kumo.volume.models import (
    ATTACHED,
    ATTACHING,
    AVAILABLE,
    DETACHING,
    IN_USE,
    RESERVED,
    Volume,
    VolumeAttachment,
    now,
)
from kumo.volume.volumes import InvalidVolume, get_volume

ROOT_DEVICE = "/dev/vda"


def for_server(session: Session, server_id: str) -> list[VolumeAttachment]:
    """The server's attachments, root first, then in the order they were made."""
    found = list(session.scalars(select(VolumeAttachment).where(
        VolumeAttachment.server_id == server_id).order_by(VolumeAttachment.created_at)))
    return sorted(found, key=lambda a: (a.boot_index != 0, a.created_at))


def of_volume(session: Session, volume_id: str) -> list[VolumeAttachment]:
    return list(session.scalars(select(VolumeAttachment).where(
        VolumeAttachment.volume_id == volume_id)))


def find(session: Session, server_id: str, volume_id: str) -> VolumeAttachment | None:
    return session.scalar(select(VolumeAttachment).where(
        VolumeAttachment.server_id == server_id, VolumeAttachment.volume_id == volume_id))


def next_device(session: Session, server_id: str, *, has_local_root: bool) -> str:
    used = {a.device for a in for_server(session, server_id)}
    if has_local_root:
        used.add(ROOT_DEVICE)
    for letter in string.ascii_lowercase[1:]:
        device = f"/dev/vd{letter}"
        if device not in used:
            return device
    raise BadRequest(f"server {server_id} has no free device name left")


def reserve(session: Session, context: RequestContext, volume_id: str, server_id: str, *,
            boot_index: int | None = None, delete_on_termination: bool = False,
            tag: str | None = None, has_local_root: bool = True) -> VolumeAttachment:
    """Reserve an available volume for the server (Cinder's attachment_create)."""
    volume = get_volume(session, context, volume_id)
    if find(session, server_id, volume.id) is not None:
        raise BadRequest(f"Invalid volume: volume {volume.id} is already attached to server "
                         f"{server_id}")
    if volume.status != AVAILABLE:
        raise InvalidVolume(f"Volume {volume.id} status must be available to reserve, but "
                            f"the current status is {volume.status}.")
    return reserve_new(session, volume, server_id, boot_index=boot_index,
                       delete_on_termination=delete_on_termination, tag=tag,
                       has_local_root=has_local_root)


def reserve_new(session: Session, volume: Volume, server_id: str, *,
                boot_index: int | None = None, delete_on_termination: bool = False,
                tag: str | None = None, has_local_root: bool = True) -> VolumeAttachment:
    """The attachment of a volume compute has just asked for (still `creating`)."""
    device = ROOT_DEVICE if boot_index == 0 else next_device(
        session, server_id, has_local_root=has_local_root)
    entry = VolumeAttachment(volume_id=volume.id, server_id=server_id, status=RESERVED,
                             device=device, boot_index=boot_index,
                             delete_on_termination=delete_on_termination, tag=tag,
                             attach_mode="ro" if volume.readonly else "rw")
    session.add(entry)
    if volume.status == AVAILABLE:
        volume.status = RESERVED
    session.flush()
    return entry


def _volume(session: Session, entry: VolumeAttachment) -> Volume:
    volume = session.get(Volume, entry.volume_id)
    if volume is None:
        raise NotFound(f"Volume {entry.volume_id} could not be found.")
    return volume


def begin_attach(session: Session, attachment_id: str) -> VolumeAttachment:
    entry = _entry(session, attachment_id)
    entry.status = ATTACHING
    _volume(session, entry).status = ATTACHING
    return entry


def finish_attach(session: Session, attachment_id: str) -> None:
    entry = _entry(session, attachment_id)
    entry.status, entry.attached_at = ATTACHED, now()
    _volume(session, entry).status = IN_USE


def abort_attach(session: Session, attachment_id: str) -> None:
    """Undo a reservation or a failed attach: the volume is available again."""
    entry = session.get(VolumeAttachment, attachment_id)
    if entry is None:
        return
    volume = session.get(Volume, entry.volume_id)
    session.delete(entry)
    if volume is not None and volume.status in (RESERVED, ATTACHING):
        volume.status = AVAILABLE


def begin_detach(session: Session, server_id: str, volume_id: str) -> VolumeAttachment:
    """in-use -> detaching; 400 unless the volume is attached to this server right now."""
    entry = find(session, server_id, volume_id)
    if entry is None:
        raise NotFound(f"volume_id not found: {volume_id}")
    if entry.status != ATTACHED:
        raise BadRequest(f"Invalid volume: Volume {volume_id} is {entry.status} on server "
                         f"{server_id}; it can be detached once it is attached")
    entry.status = DETACHING
    _volume(session, entry).status = DETACHING
    return entry


def finish_detach(session: Session, attachment_id: str) -> None:
    entry = session.get(VolumeAttachment, attachment_id)
    if entry is None:
        return
    volume = session.get(Volume, entry.volume_id)
    session.delete(entry)
    session.flush()
    if volume is not None:
        volume.status = IN_USE if of_volume(session, volume.id) else AVAILABLE


def abort_detach(session: Session, attachment_id: str) -> None:
    """The guest kept the volume: it stays attached and in-use."""
    entry = session.get(VolumeAttachment, attachment_id)
    if entry is None:
        return
    entry.status = ATTACHED
    volume = session.get(Volume, entry.volume_id)
    if volume is not None:
        volume.status = IN_USE


def _entry(session: Session, attachment_id: str) -> VolumeAttachment:
    entry = session.get(VolumeAttachment, attachment_id)
    if entry is None:
        raise NotFound(f"Volume attachment {attachment_id} could not be found.")
    return entry
