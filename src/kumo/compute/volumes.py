"""Volumes on servers: nova's side of Block Storage.

`os-volume_attachments` (attach, list, show, detach), the volumes a server's QEMU gets
at start, the volumes made for boot from volume, and what happens to them when the
server goes. Nova drives Cinder's attachment API; here both run in one process, so
compute calls `kumo.volume.attachments` and the volume service directly.

The records change at once (HTTP handlers); the slow part, QMP hot-plug into a running
guest, runs as a compute job under the server's lock, like every other server action.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.compute.models import ACTIVE, STOPPED, Server
from kumo.db.engine import session_scope
from kumo.errors import BadRequest, Conflict, Forbidden, KumoError
from kumo.hypervisor.driver import GuestState, Hypervisor, VolumeDisk
from kumo.runtime import Runtime
from kumo.volume import attachments
from kumo.volume.models import (
    ATTACHED,
    ATTACHING,
    RESERVED,
    Volume,
    VolumeAttachment,
    VolumeSnapshot,
)

log = logging.getLogger("kumo.compute.volumes")

# nova lets volumes be attached and detached in these vm_states (no task running).
ATTACH_STATES = (ACTIVE, STOPPED)


@dataclass(frozen=True)
class AttachmentView:
    """One block device mapping of a volume, as nova's API shows it."""

    volume_id: str
    server_id: str
    device: str | None
    tag: str | None
    delete_on_termination: bool
    attachment_id: str
    boot_index: int | None

    @classmethod
    def of(cls, entry: VolumeAttachment) -> AttachmentView:
        return cls(entry.volume_id, entry.server_id, entry.device, entry.tag,
                   entry.delete_on_termination, entry.id, entry.boot_index)

    def shown(self, version: tuple[int, int]) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if version < (2, 89):
            body["id"] = self.volume_id
        body.update({"volumeId": self.volume_id, "serverId": self.server_id})
        if self.device:
            body["device"] = self.device
        if version >= (2, 70):
            body["tag"] = self.tag
        if version >= (2, 79):
            body["delete_on_termination"] = self.delete_on_termination
        if version >= (2, 89):
            body["attachment_id"] = self.attachment_id
            body["bdm_uuid"] = self.attachment_id
        return body


def check_server_state(server: Server, verb: str) -> None:
    if server.vm_state not in ATTACH_STATES or server.task_state is not None:
        raise Conflict(
            f"Cannot '{verb}' instance {server.id} while it is in vm_state {server.vm_state}"
            + (f" and task_state {server.task_state}" if server.task_state else ""))


def is_volume_backed(session: Session, server_id: str) -> bool:
    return session.scalar(select(VolumeAttachment.id).where(
        VolumeAttachment.server_id == server_id, VolumeAttachment.boot_index == 0)) is not None


def list_for(session: Session, server_ids: list[str]) -> dict[str, list[VolumeAttachment]]:
    """Every server's volumes (for `os-extended-volumes:volumes_attached`)."""
    found: dict[str, list[VolumeAttachment]] = {sid: [] for sid in server_ids}
    if server_ids:
        for entry in session.scalars(select(VolumeAttachment).where(
                VolumeAttachment.server_id.in_(server_ids)).order_by(
                VolumeAttachment.created_at)):
            found[entry.server_id].append(entry)
    return {sid: sorted(entries, key=lambda a: a.boot_index != 0)
            for sid, entries in found.items()}


def reserve(session: Session, context: RequestContext, server: Server, volume_id: str, *,
            tag: str | None, delete_on_termination: bool, max_volumes: int) -> AttachmentView:
    """POST os-volume_attachments: the volume reserved for this server (then attached).

    `max_volumes` is the host's `num_pcie_ports`: a running guest has no more slots.
    """
    from kumo.volume.volumes import get_volume

    context.require_writer()
    check_server_state(server, "attach_volume")
    get_volume(session, context, volume_id)  # 404 first, as nova
    plugged = [e for e in attachments.for_server(session, server.id) if e.boot_index != 0]
    if len(plugged) >= max_volumes:
        raise Forbidden(f"The maximum allowed number of disk devices ({max_volumes}) to attach "
                        "to a single instance has been exceeded.")
    entry = attachments.reserve(
        session, context, volume_id, server.id, tag=tag,
        delete_on_termination=delete_on_termination,
        has_local_root=not is_volume_backed(session, server.id))
    return AttachmentView.of(entry)


def begin_detach(session: Session, context: RequestContext, server: Server,
                 volume_id: str) -> AttachmentView:
    """DELETE os-volume_attachments/{volume}: the volume `detaching` (then released)."""
    context.require_writer()
    entry = attachments.find(session, server.id, volume_id)
    if entry is None:
        raise_not_attached(server.id, volume_id)
    assert entry is not None
    if entry.boot_index == 0:
        raise BadRequest("Cannot detach a root device volume")
    check_server_state(server, "detach_volume")
    return AttachmentView.of(attachments.begin_detach(session, server.id, volume_id))


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


def raise_not_attached(server_id: str, volume_id: str) -> None:
    from kumo.errors import NotFound

    raise NotFound(f"Instance {server_id} is not attached to volume {volume_id}")


class ServerVolumes:
    """The jobs compute runs for volumes (each under the server's lock)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    @property
    def service(self) -> Any:
        from kumo.volume.service import volume_service_of

        return volume_service_of(self.runtime)

    def disks(self, server_id: str) -> tuple[VolumeDisk | None, tuple[VolumeDisk, ...]]:
        """The server's boot volume (if any) and its other attached volumes, in order."""
        with session_scope(self.runtime.sessions) as session:
            entries = [(e.volume_id, e.boot_index) for e in attachments.for_server(
                session, server_id) if e.status in (ATTACHED, ATTACHING, "detaching")]
        root: VolumeDisk | None = None
        data: list[VolumeDisk] = []
        for volume_id, boot_index in entries:
            disk = self.service.disk(volume_id)
            if boot_index == 0:
                root = disk
            else:
                data.append(disk)
        return root, tuple(data)

    def attach(self, hypervisor: Hypervisor, server_id: str, attachment_id: str) -> None:
        """reserved -> attaching -> attached: hot-plugged now if the guest runs."""
        with session_scope(self.runtime.sessions) as session:
            entry = attachments.begin_attach(session, attachment_id)
            volume_id = entry.volume_id
        try:
            if hypervisor.status(server_id).state is GuestState.RUNNING:
                hypervisor.attach_volume(server_id, self.service.disk(volume_id))
        except BaseException:
            with session_scope(self.runtime.sessions) as session:
                attachments.abort_attach(session, attachment_id)
            raise
        with session_scope(self.runtime.sessions) as session:
            attachments.finish_attach(session, attachment_id)
        log.info("server %s: volume %s attached", server_id, volume_id)

    def detach(self, hypervisor: Hypervisor, server_id: str, attachment_id: str) -> None:
        """detaching -> gone: unplugged from a running guest first (which must let go)."""
        with session_scope(self.runtime.sessions) as session:
            entry = session.get(VolumeAttachment, attachment_id)
            if entry is None:
                return
            volume_id = entry.volume_id
        try:
            hypervisor.detach_volume(server_id, volume_id)
        except BaseException:
            with session_scope(self.runtime.sessions) as session:
                attachments.abort_detach(session, attachment_id)
            raise
        with session_scope(self.runtime.sessions) as session:
            attachments.finish_detach(session, attachment_id)
        log.info("server %s: volume %s detached", server_id, volume_id)

    def create_boot_volumes(self, server_id: str) -> None:
        """Fill the volumes made for this server at create time (boot from volume)."""
        from kumo.volume.service import source_of

        with session_scope(self.runtime.sessions) as session:
            pending = [e.volume_id for e in attachments.for_server(session, server_id)
                       if e.status == RESERVED]
            creating = [v.id for v in session.scalars(select(Volume).where(
                Volume.id.in_(pending), Volume.status == "creating"))]
        for volume_id in creating:
            self.service.create_volume_now(volume_id, source_of(self.runtime, volume_id),
                                           status_after=RESERVED)

    def mark_attached(self, server_id: str) -> None:
        """Volumes plugged at start (the spawn's cold plug) are attached and in-use; they
        stay so if the spawn fails, as nova keeps an errored server's volumes until it is
        deleted."""
        with session_scope(self.runtime.sessions) as session:
            for entry in attachments.for_server(session, server_id):
                if entry.status in (RESERVED, ATTACHING):
                    attachments.begin_attach(session, entry.id)
                    attachments.finish_attach(session, entry.id)

    def snapshot_volume_backed(self, hypervisor: Hypervisor, server_id: str,
                               context: RequestContext, image_name: str) -> dict[str, str]:
        """nova's snapshot of a volume-backed server: a snapshot of every volume (taken
        together, the guest paused), and the image properties that map them back.

        Returns the properties for the image: `block_device_mapping` (JSON, each volume as
        `source_type snapshot`), `bdm_v2`, `root_device_name`. Booting that image makes a
        volume from each snapshot, as nova does.
        """
        import json

        from kumo.volume import snapshots

        with session_scope(self.runtime.sessions) as session:
            entries = attachments.for_server(session, server_id)
            taken: list[tuple[VolumeAttachment, str]] = []
            for entry in entries:
                body = {"snapshot": {"volume_id": entry.volume_id, "force": True,
                                     "name": f"snapshot for {image_name}"}}
                snapshot, _ = snapshots.create_snapshot(session, context, self.runtime.settings,
                                                        body, (3, 66))
                taken.append((entry, snapshot.id))
                session.expunge(entry)
        running = hypervisor.status(server_id).state is GuestState.RUNNING
        with hypervisor.quiesced(server_id) if running else _nothing():
            for _, snapshot_id in taken:
                self.service.snapshot_now(snapshot_id, None)
        mapping = []
        with session_scope(self.runtime.sessions) as session:
            for entry, snapshot_id in taken:
                volume = session.get(Volume, entry.volume_id)
                mapping.append({
                    "source_type": "snapshot", "destination_type": "volume",
                    "snapshot_id": snapshot_id, "volume_id": None,
                    "volume_size": volume.size if volume else None,
                    "boot_index": entry.boot_index, "device_name": entry.device,
                    "delete_on_termination": entry.delete_on_termination, "tag": entry.tag,
                    "disk_bus": "virtio", "device_type": "disk", "guest_format": None,
                    "no_device": None, "image_id": None})
        return {"block_device_mapping": json.dumps(mapping), "bdm_v2": "True",
                "root_device_name": attachments.ROOT_DEVICE}

    def root_image_properties(self, session: Session, server_id: str) -> dict[str, str]:
        """The properties of the image a volume-backed server's root volume was made from
        (os_admin_user, os_distro, ...), without that image's own facts."""
        facts = {"image_id", "image_name", "checksum", "size", "disk_format",
                 "container_format", "min_disk", "min_ram"}
        for entry in attachments.for_server(session, server_id):
            if entry.boot_index == 0:
                volume = session.get(Volume, entry.volume_id)
                meta = volume.image_meta or {} if volume else {}
                return {k: v for k, v in meta.items() if k not in facts}
        return {}

    def release(self, server_id: str) -> None:
        """The server is gone: its volumes are available again, or deleted when asked
        (delete_on_termination)."""
        doomed = []
        with session_scope(self.runtime.sessions) as session:
            for entry in attachments.for_server(session, server_id):
                if entry.delete_on_termination:
                    doomed.append(entry.volume_id)
                attachments.finish_detach(session, entry.id)
                volume = session.get(Volume, entry.volume_id)
                if volume is not None and volume.status in ("creating", RESERVED):
                    volume.status = "available" if volume.provider_location else "error"
        for volume_id in doomed:
            try:
                self.delete_volume(volume_id)
            except KumoError as exc:
                log.warning("server %s: could not delete volume %s (delete_on_termination): "
                            "%s", server_id, volume_id, exc.message)

    def delete_volume(self, volume_id: str) -> None:
        """Cinder's delete, as nova asks it: a volume with snapshots stays (and is logged)."""
        with session_scope(self.runtime.sessions) as session:
            volume = session.get(Volume, volume_id)
            if volume is None:
                return
            if session.scalar(select(VolumeSnapshot.id).where(
                    VolumeSnapshot.volume_id == volume_id)):
                raise KumoError(f"volume {volume_id} has snapshots; it was kept")
            volume.status = "deleting"
        self.service.delete_volume_now(volume_id)
