"""The volume service of this host: makes volume records true with a `VolumeDriver`.

HTTP handlers change records (status `creating`, `deleting`, `extending`, ...) and
submit a job; jobs run on a small thread pool, one at a time per volume, and move
the status on, or to `error` with a user message (GET /messages) saying why. For an
attached volume the running guest is involved: its QEMU grows the disk
(`block_resize`), and copies (snapshot, clone, upload) are taken while the guest is
paused, as the server snapshot does.

Compute calls the attachment functions at the bottom in-process, as nova calls
Cinder's attachment API: reserve -> attaching -> attached, and back.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from typing import Any, TypeVar

from sqlalchemy import select

from kumo.api.context import RequestContext
from kumo.db.engine import session_scope
from kumo.errors import KumoError, ServiceUnavailable
from kumo.hypervisor.driver import GuestState, Hypervisor, VolumeDisk
from kumo.runtime import Runtime
from kumo.volume.driver import GIB, VolumeDriver, build_driver
from kumo.volume.images import VolumeImages
from kumo.volume.models import (
    ATTACHED,
    ATTACHING,
    AVAILABLE,
    DETACHING,
    ERROR,
    ERROR_DELETING,
    ERROR_EXTENDING,
    IN_USE,
    RESERVED,
    Volume,
    VolumeAttachment,
    VolumeSnapshot,
)
from kumo.volume.volumes import CreateSource
from kumo.workers import KeyedWorkers

log = logging.getLogger("kumo.volume")
Dropped = TypeVar("Dropped", Volume, VolumeSnapshot)


def describe(exc: BaseException) -> str:
    if isinstance(exc, KumoError):
        return exc.message
    return f"kumo hit an unexpected error ({type(exc).__name__}: {exc}); see its log"


class VolumeService:
    """Registered as runtime.services["volume"]; `kumo up` calls start() and stop()."""

    def __init__(self, runtime: Runtime, driver: VolumeDriver | None = None,
                 *, workers: int = 2) -> None:
        self.runtime = runtime
        self.driver = driver or build_driver(runtime.settings)
        self.images = VolumeImages(runtime)
        self.jobs = KeyedWorkers("volume", workers)

    @property
    def hypervisor(self) -> Hypervisor | None:
        found: Any = self.runtime.services.get("hypervisor")
        return found if hasattr(found, "attach_volume") else None

    # -- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        import asyncio

        await asyncio.to_thread(self.recover)

    async def stop(self) -> None:
        import asyncio

        await asyncio.to_thread(self.jobs.shutdown)

    def recover(self) -> None:
        """After a crash: no half-made files, no record stuck in a transient status."""
        for leftover in self.driver.sweep():
            log.warning("removed what an interrupted volume operation left: %s", leftover)
        redo_volumes: list[str] = []
        redo_snapshots: list[str] = []
        with session_scope(self.runtime.sessions) as session:
            for volume in session.scalars(select(Volume)):
                redo = self._recover_volume(session, volume)
                if redo:
                    redo_volumes.append(volume.id)
            for snapshot in session.scalars(select(VolumeSnapshot)):
                if snapshot.status == "creating":
                    snapshot.status, snapshot.error = ERROR, "kumo stopped while taking it"
                elif snapshot.status == "deleting":
                    redo_snapshots.append(snapshot.id)
        for volume_id in redo_volumes:
            self.submit(volume_id, lambda vid: self._delete(vid, []))
        for snapshot_id in redo_snapshots:
            self.submit(snapshot_id, self._delete_snapshot)

    def _recover_volume(self, session: Any, volume: Volume) -> bool:
        entries = list(session.scalars(select(VolumeAttachment).where(
            VolumeAttachment.volume_id == volume.id)))
        for entry in entries:
            if entry.status in (RESERVED, ATTACHING):  # the attach job died with kumo
                session.delete(entry)
            elif entry.status == DETACHING:  # the guest may still have it: ask again later
                entry.status = ATTACHED
        settled = IN_USE if any(e.status in (ATTACHED, DETACHING) for e in entries) \
            else AVAILABLE
        if volume.status == "creating":
            volume.status, volume.error = ERROR, "kumo stopped while creating this volume"
        elif volume.status == "deleting":
            return True
        elif volume.status == "extending":
            with contextlib.suppress(KumoError):
                if volume.provider_location:
                    volume.size = -(-self.driver.virtual_size(volume.provider_location) // GIB)
            volume.status = settled
        elif volume.status in (RESERVED, ATTACHING, DETACHING, "uploading"):
            volume.status = settled
        return False

    # -- jobs ----------------------------------------------------------------

    def submit(self, key: str, job: Callable[[str], None]) -> Future[None]:
        return self.jobs.submit(key, job)

    def wait_idle(self, timeout: float = 60) -> None:
        """Block until every submitted job has finished (tests, shutdown)."""
        self.jobs.wait_idle(timeout)

    def _update(self, model: type[Any], key: str, change: Callable[[Any], None]) -> Any:
        with session_scope(self.runtime.sessions) as session:
            record = session.get(model, key)
            if record is None:
                return None
            change(record)
            session.flush()
            session.expunge(record)
            return record

    def _fail_volume(self, volume_id: str, what: str, exc: BaseException,
                     status: str = ERROR) -> None:
        message = f"{what} failed: {describe(exc)}"
        if not isinstance(exc, KumoError):
            log.error("volume %s: %s", volume_id, message, exc_info=exc)
        log.warning("volume %s: %s", volume_id, message)

        def change(volume: Volume) -> None:
            volume.status, volume.error = status, message

        self._update(Volume, volume_id, change)

    @contextlib.contextmanager
    def _quiet(self, server_id: str | None) -> Iterator[None]:
        """The guest of `server_id` held still (if it runs here) while a copy is taken."""
        hypervisor = self.hypervisor
        if server_id is None or hypervisor is None:
            yield
            return
        with hypervisor.quiesced(server_id):
            yield

    def server_of(self, volume_id: str) -> str | None:
        with session_scope(self.runtime.sessions) as session:
            return session.scalar(select(VolumeAttachment.server_id).where(
                VolumeAttachment.volume_id == volume_id))

    # creating -> available | error

    def submit_create(self, volume_id: str, source: CreateSource) -> Future[None]:
        return self.submit(volume_id, lambda vid: self._create(vid, source))

    def _create(self, volume_id: str, source: CreateSource) -> None:
        try:
            location = self.create_volume_now(volume_id, source)
        except Exception as exc:
            self._fail_volume(volume_id, "creating the volume", exc)
            return
        log.info("volume %s created (%s)", volume_id, location)

    def create_volume_now(self, volume_id: str, source: CreateSource, *,
                          status_after: str = AVAILABLE) -> str:
        """Fill the `creating` volume from its source and set `status_after` (blocking):
        available, or reserved when compute made it for a server (boot from volume)."""
        with session_scope(self.runtime.sessions) as session:
            volume = session.get(Volume, volume_id)
            if volume is None:
                raise KumoError(f"volume {volume_id} vanished while being created")
            size = volume.size * GIB
            snapshot_location = parent = None
            if source.snapshot_id:
                snapshot = session.get(VolumeSnapshot, source.snapshot_id)
                snapshot_location = snapshot.provider_location if snapshot else None
                if snapshot_location is None:
                    raise KumoError(f"snapshot {source.snapshot_id} has no data")
            if source.source_volid:
                parent_volume = session.get(Volume, source.source_volid)
                parent = parent_volume.provider_location if parent_volume else None
                if parent is None:
                    raise KumoError(f"volume {source.source_volid} has no data")
        if source.image is not None:
            with self.images.local_file(source.image.id) as path:
                location = self.driver.create_from_image(volume_id, path,
                                                         source.image.disk_format, size)
        elif snapshot_location is not None:
            location = self.driver.create_from_snapshot(volume_id, snapshot_location, size)
        elif parent is not None:
            with self._quiet(self.server_of(str(source.source_volid))):
                location = self.driver.clone(volume_id, parent, size)
        else:
            location = self.driver.create_blank(volume_id, size)

        def done(volume: Volume) -> None:
            volume.provider_location, volume.status, volume.error = location, status_after, None

        if self._update(Volume, volume_id, done) is None:  # deleted meanwhile
            self.driver.delete(location)
            raise KumoError(f"volume {volume_id} was deleted while being created")
        return location

    # deleting -> gone | error_deleting

    def submit_delete(self, volume_id: str, snapshot_ids: list[str]) -> Future[None]:
        return self.submit(volume_id, lambda vid: self._delete(vid, snapshot_ids))

    def _delete(self, volume_id: str, snapshot_ids: list[str]) -> None:
        try:
            for snapshot_id in snapshot_ids:
                self._delete_snapshot(snapshot_id)
            self.delete_volume_now(volume_id)
        except Exception as exc:
            self._fail_volume(volume_id, "deleting the volume", exc, ERROR_DELETING)

    def delete_volume_now(self, volume_id: str) -> None:
        """Remove the volume's bytes, then its record (blocking)."""
        self._drop(Volume, volume_id, self.driver.delete)
        log.info("volume %s deleted", volume_id)

    # extending -> available / in-use | error_extending

    def submit_extend(self, volume_id: str, old_size: int, new_size: int,
                      server_id: str | None) -> Future[None]:
        return self.submit(volume_id,
                           lambda vid: self._extend(vid, old_size, new_size, server_id))

    def _extend(self, volume_id: str, old_size: int, new_size: int,
                server_id: str | None) -> None:
        settled = IN_USE if server_id else AVAILABLE
        try:
            with session_scope(self.runtime.sessions) as session:
                volume = session.get(Volume, volume_id)
                location = volume.provider_location if volume else None
            if location is None:
                raise KumoError(f"volume {volume_id} has no data")
            hypervisor = self.hypervisor
            if server_id and hypervisor is not None and \
                    hypervisor.status(server_id).state is GuestState.RUNNING:
                # QEMU holds the file: it grows the disk and tells the guest.
                hypervisor.extend_volume(server_id, volume_id, new_size * GIB)
            else:
                self.driver.extend(location, new_size * GIB)
        except Exception as exc:
            self._fail_volume(volume_id, f"extending from {old_size} to {new_size} GB", exc,
                              ERROR_EXTENDING)
            return

        def done(volume: Volume) -> None:
            volume.size, volume.status, volume.error = new_size, settled, None

        self._update(Volume, volume_id, done)
        log.info("volume %s extended to %d GB", volume_id, new_size)

    # snapshots: creating -> available | error; deleting -> gone | error_deleting

    def submit_snapshot(self, snapshot_id: str, server_id: str | None) -> Future[None]:
        return self.submit(snapshot_id, lambda sid: self._snapshot(sid, server_id))

    def _snapshot(self, snapshot_id: str, server_id: str | None) -> None:
        try:
            self.snapshot_now(snapshot_id, server_id)
        except Exception as exc:
            message = f"taking the snapshot failed: {describe(exc)}"
            log.warning("snapshot %s: %s", snapshot_id, message)

            def failed(snapshot: VolumeSnapshot) -> None:
                snapshot.status, snapshot.error = ERROR, message

            self._update(VolumeSnapshot, snapshot_id, failed)

    def snapshot_now(self, snapshot_id: str, server_id: str | None) -> None:
        """Copy the volume into the `creating` snapshot and make it available (blocking)."""
        with session_scope(self.runtime.sessions) as session:
            snapshot = session.get(VolumeSnapshot, snapshot_id)
            volume = session.get(Volume, snapshot.volume_id) if snapshot else None
            location = volume.provider_location if volume else None
        if location is None:
            raise KumoError(f"the volume of snapshot {snapshot_id} has no data")
        with self._quiet(server_id):
            made = self.driver.create_snapshot(snapshot_id, location)

        def done(snapshot: VolumeSnapshot) -> None:
            snapshot.provider_location, snapshot.status, snapshot.error = made, AVAILABLE, None

        if self._update(VolumeSnapshot, snapshot_id, done) is None:
            self.driver.delete_snapshot(made)

    def submit_delete_snapshot(self, snapshot_id: str) -> Future[None]:
        return self.submit(snapshot_id, self._delete_snapshot_job)

    def _delete_snapshot_job(self, snapshot_id: str) -> None:
        try:
            self._delete_snapshot(snapshot_id)
        except Exception as exc:
            message = f"deleting the snapshot failed: {describe(exc)}"
            log.warning("snapshot %s: %s", snapshot_id, message)

            def failed(snapshot: VolumeSnapshot) -> None:
                snapshot.status, snapshot.error = ERROR_DELETING, message

            self._update(VolumeSnapshot, snapshot_id, failed)

    def _delete_snapshot(self, snapshot_id: str) -> None:
        self._drop(VolumeSnapshot, snapshot_id, self.driver.delete_snapshot)

    def _drop(self, model: type[Dropped], key: str, remove: Callable[[str], None]) -> None:
        """The bytes first, then the record: a crash in between leaves a record in
        `deleting` that the next start deletes again, never bytes nobody knows of."""
        with session_scope(self.runtime.sessions) as session:
            found = session.get(model, key)
            location = found.provider_location if found is not None else None
        if location:
            remove(location)
        with session_scope(self.runtime.sessions) as session:
            record = session.get(model, key)
            if record is not None:
                session.delete(record)

    # uploading -> available / in-use (the image: queued -> active, or deleted)

    def submit_upload(self, volume_id: str, context: RequestContext, image_id: str,
                      disk_format: str, previous: str, server_id: str | None) -> Future[None]:
        return self.submit(volume_id, lambda vid: self._upload(
            vid, context, image_id, disk_format, previous, server_id))

    def _upload(self, volume_id: str, context: RequestContext, image_id: str,
                disk_format: str, previous: str, server_id: str | None) -> None:
        folder = self.runtime.settings.volumes_dir
        export = folder / f".upload-{image_id}.part"
        try:
            with session_scope(self.runtime.sessions) as session:
                volume = session.get(Volume, volume_id)
                location = volume.provider_location if volume else None
            if location is None:
                raise KumoError(f"volume {volume_id} has no data")
            folder.mkdir(parents=True, exist_ok=True)
            with self._quiet(server_id):
                self.driver.export(location, export, disk_format)
            self.images.upload(context, image_id, export)
        except Exception as exc:
            self.images.abandon(context, image_id)
            self._fail_volume(volume_id, f"uploading to image {image_id}", exc, previous)
            return
        finally:
            export.unlink(missing_ok=True)
        self._update(Volume, volume_id, lambda v: setattr(v, "status", previous))
        log.info("volume %s uploaded to image %s", volume_id, image_id)

    # -- attachments, for compute (nova drives Cinder's attachment API) -------

    def disk(self, volume_id: str) -> VolumeDisk:
        """How this host's QEMU opens the volume."""
        with session_scope(self.runtime.sessions) as session:
            volume = session.get(Volume, volume_id)
            if volume is None or volume.provider_location is None:
                raise KumoError(f"volume {volume_id} has no data to attach")
            return self.driver.disk(volume.id, volume.provider_location,
                                    read_only=volume.readonly)


def source_of(runtime: Runtime, volume_id: str) -> CreateSource:
    """Where a `creating` volume's contents come from, read back from its record."""
    from kumo.image import service as images

    with session_scope(runtime.sessions) as session:
        volume = session.get(Volume, volume_id)
        if volume is None:
            raise KumoError(f"volume {volume_id} vanished")
        if volume.image_id:
            # Access was checked when the volume was asked for; the image must still be active.
            image: Any = images.get_image_for_boot(session, None, volume.image_id)
            from kumo.volume.images import facts_of

            return CreateSource(image=facts_of(image))
        return CreateSource(snapshot_id=volume.snapshot_id, source_volid=volume.source_volid)


def volume_service_of(runtime: Runtime) -> VolumeService:
    """The registered volume service (handlers use this)."""
    service: Any = runtime.services.get("volume")
    if not isinstance(service, VolumeService):
        raise ServiceUnavailable("the volume service is not running in this process "
                                 "(Block Storage runs in kumo up only, not in kumo api)")
    return service


def register(runtime: Runtime) -> VolumeService:
    """Register the volume service (called by `prepare`, after the hypervisor)."""
    service = VolumeService(runtime)
    runtime.services["volume"] = service
    return service

