"""Nova's server actions on one host's QEMU guests: pause, suspend, rebuild, resize, rescue.

What each does to the guest, as nova's libvirt driver does it:

- pause/unpause: QMP `stop`/`cont`; the guest keeps its memory and QEMU process.
- suspend/resume: libvirt's managed save. The paused guest's RAM and device state
  are written to `memory.state` with a QEMU migration to a file, QEMU exits; resume
  starts QEMU with `-incoming defer` and loads the file, and the guest runs on.
- rebuild: the root disk is made again from the (possibly new) image.
- resize: the guest is shut down, its disk kept as `disk.resize-orig` for a revert,
  grown to the new flavor's size, and started with the new vCPUs and RAM; confirm
  drops the kept disk, revert puts it back and starts with the old flavor.
- rescue: the guest is shut down and QEMU boots a fresh disk of the rescue image,
  with the server's own disk attached second (`/dev/vdb` inside); unrescue drops
  the rescue disk and boots the server's disk again.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from kumo.errors import Conflict, KumoError, NotFound, ToolError
from kumo.hypervisor import qemu
from kumo.hypervisor.cache_manager import INSTANCE_RECORD
from kumo.hypervisor.driver import GuestSpec, GuestStatus
from kumo.hypervisor.qmp import QMPClient, QMPError

if TYPE_CHECKING:
    from kumo.hypervisor.accel import Accel, AccelChooser
    from kumo.hypervisor.imagecache import ImageCache

log = logging.getLogger("kumo.hypervisor")

RESIZE_BACKUP = "disk.resize-orig"
SHUTDOWN_TIMEOUT = 60.0  # seconds a guest gets to power off before resize/rescue
MIGRATION_TIMEOUT = 300.0


class GuestLifecycle:
    """Mixed into `LocalHypervisor`; uses its locks, processes, monitor and image cache."""

    if TYPE_CHECKING:
        cache: ImageCache
        accel: AccelChooser

        def folder(self, server_id: str) -> Path: ...
        def _lock(self, server_id: str) -> threading.RLock: ...
        def _process(self, server_id: str) -> qemu.QemuProcess | None: ...
        def _qmp(self, server_id: str, timeout: float = 5.0) -> QMPClient: ...
        def _start(self, spec: GuestSpec, *, accel_args: Accel,
                   incoming: bool = False) -> GuestStatus: ...
        def _quit(self, server_id: str, proc: qemu.QemuProcess) -> None: ...
        def _powerdown(self, server_id: str, timeout: float) -> bool: ...
        def _check_memory(self, spec: GuestSpec) -> None: ...
        def _storage_error(self, exc: ToolError) -> KumoError: ...
        def status(self, server_id: str) -> GuestStatus: ...

    # -- helpers -------------------------------------------------------------

    def _running_proc(self, server_id: str) -> qemu.QemuProcess:
        proc = self._process(server_id)
        if proc is None:
            raise Conflict(f"server {server_id} is not running on this host")
        return proc

    def _shut_down(self, server_id: str, *, graceful: bool = True) -> None:
        """Stop QEMU (after an ACPI shutdown when graceful); no marker: a start follows."""
        proc = self._process(server_id)
        if proc is None:
            return
        if graceful:
            self._powerdown(server_id, SHUTDOWN_TIMEOUT)
        self._quit(server_id, proc)

    def _record(self, server_id: str) -> dict[str, str]:
        try:
            loaded = json.loads((self.folder(server_id) / INSTANCE_RECORD).read_text())
        except (OSError, ValueError):
            return {}
        return dict(loaded) if isinstance(loaded, dict) else {}

    def _write_record(self, server_id: str, record: dict[str, str]) -> None:
        path = self.folder(server_id) / INSTANCE_RECORD
        tmp = path.with_name(path.name + ".part")
        tmp.write_text(json.dumps(record))
        os.replace(tmp, path)

    def _boot(self, spec: GuestSpec, *, incoming: bool = False) -> GuestStatus:
        accel = self.accel.choose()
        self._check_memory(spec)
        return self._start(spec, accel_args=accel, incoming=incoming)

    def _new_disk(self, spec: GuestSpec, image_id: str, name: str) -> str:
        """A disk of `image_id` at `name` in the guest's folder; its format."""
        disk = self.folder(spec.server_id) / name
        disk.unlink(missing_ok=True)
        try:
            made = self.cache.create_disk(image_id, disk, spec.root_gb)
        except ToolError as exc:
            raise self._storage_error(exc) from None
        return made.format

    # -- pause ---------------------------------------------------------------

    def pause(self, server_id: str) -> None:
        """Freeze the guest's vCPUs in memory (QMP stop)."""
        with self._lock(server_id):
            self._running_proc(server_id)
            with self._qmp(server_id) as monitor:
                monitor.execute("stop")

    def unpause(self, server_id: str) -> None:
        """Let a paused guest run on (QMP cont)."""
        with self._lock(server_id):
            self._running_proc(server_id)
            with self._qmp(server_id) as monitor:
                monitor.execute("cont")

    # -- suspend ---------------------------------------------------------------

    def suspend(self, server_id: str) -> None:
        """Save the guest's memory to `memory.state` and stop QEMU (libvirt's managed save)."""
        with self._lock(server_id):
            proc = self._running_proc(server_id)
            folder = self.folder(server_id)
            part = folder / (qemu.MEMORY_STATE + ".part")
            part.unlink(missing_ok=True)
            with self._qmp(server_id) as monitor:
                monitor.execute("stop")
                try:
                    # exec: runs in QEMU's working directory, the guest's folder
                    monitor.execute("migrate", {"uri": f"exec:cat > {part.name}"})
                    self._wait_migration(monitor, "saving its memory")
                except KumoError:
                    monitor.execute("cont")
                    part.unlink(missing_ok=True)
                    raise
            os.replace(part, folder / qemu.MEMORY_STATE)
            (folder / "shutoff").touch()  # a gone QEMU here is on purpose, not a crash
            self._quit(server_id, proc)
            log.info("server %s suspended (%d MB of state)", server_id,
                     (folder / qemu.MEMORY_STATE).stat().st_size // 2**20)

    def resume(self, spec: GuestSpec) -> GuestStatus:
        """Start QEMU again from the saved memory: the guest runs on where it was."""
        with self._lock(spec.server_id):
            state = self.folder(spec.server_id) / qemu.MEMORY_STATE
            if not state.exists():
                raise NotFound(f"server {spec.server_id} has no saved memory to resume from")
            if self._process(spec.server_id) is not None:
                raise Conflict(f"server {spec.server_id} is already running")
            self._boot(spec, incoming=True)
            with self._qmp(spec.server_id) as monitor:
                monitor.execute("migrate-incoming", {"uri": f"exec:cat {state.name}"})
                self._wait_migration(monitor, "loading its memory")
                if monitor.execute("query-status").get("status") != "running":
                    monitor.execute("cont")
            state.unlink()
            return self.status(spec.server_id)

    @staticmethod
    def _wait_migration(monitor: QMPClient, what: str) -> None:
        deadline = time.monotonic() + MIGRATION_TIMEOUT
        while time.monotonic() < deadline:
            info = monitor.execute("query-migrate") or {}
            status = info.get("status")
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise QMPError(f"QEMU failed {what}: {info.get('error-desc', status)}")
            time.sleep(0.1)
        raise QMPError(f"QEMU did not finish {what} within {MIGRATION_TIMEOUT:.0f} s")

    # -- rebuild ----------------------------------------------------------------

    def rebuild(self, spec: GuestSpec, *, start: bool) -> GuestStatus:
        """A new root disk from `spec.image_id`; the guest boots it if `start`."""
        with self._lock(spec.server_id):
            self._shut_down(spec.server_id, graceful=False)
            folder = self.folder(spec.server_id)
            for stale in (qemu.DISK, RESIZE_BACKUP, qemu.RESCUE_DISK, qemu.MEMORY_STATE):
                (folder / stale).unlink(missing_ok=True)
            made = self._new_disk(spec, spec.image_id, qemu.DISK)
            record = self._record(spec.server_id)
            record.update(image_id=spec.image_id, disk_format=made)
            self._write_record(spec.server_id, record)
            if not start:
                (folder / "shutoff").touch()
                return self.status(spec.server_id)
            return self._boot(spec)

    # -- resize -----------------------------------------------------------------

    def resize(self, spec: GuestSpec, *, start: bool) -> GuestStatus:
        """Keep the disk for a revert, grow it to the new size, start with the new flavor."""
        from kumo.diskformat import qemuimg

        with self._lock(spec.server_id):
            folder = self.folder(spec.server_id)
            if spec.root_volume is not None:  # volume-backed: only vCPUs and RAM change
                self._shut_down(spec.server_id)
                return self._boot(spec) if start else self._stopped(spec.server_id)
            disk = folder / qemu.DISK
            if not disk.exists():
                raise NotFound(f"server {spec.server_id} has no disk on this host")
            self._shut_down(spec.server_id)
            fmt = self._record(spec.server_id).get("disk_format", "qcow2")
            backup = folder / RESIZE_BACKUP
            try:
                if fmt == "qcow2":  # an overlay: only what the guest wrote, small
                    shutil.copyfile(disk, backup)
                else:  # a full copy: convert keeps its holes
                    qemuimg.convert(disk, fmt, backup, fmt)
                if spec.root_gb:
                    current = qemuimg.info(disk, fmt).virtual_size
                    wanted = spec.root_gb * 1024**3
                    if wanted > current:
                        qemuimg.resize(disk, fmt, wanted)
            except ToolError as exc:
                raise self._storage_error(exc) from None
            if not start:
                return self._stopped(spec.server_id)
            return self._boot(spec)

    def _stopped(self, server_id: str) -> GuestStatus:
        (self.folder(server_id) / "shutoff").touch()
        return self.status(server_id)

    def confirm_resize(self, server_id: str) -> None:
        """Drop the disk kept for a revert."""
        with self._lock(server_id):
            (self.folder(server_id) / RESIZE_BACKUP).unlink(missing_ok=True)

    def revert_resize(self, spec: GuestSpec, *, start: bool) -> GuestStatus:
        """Put the disk from before the resize back; start with the old flavor if `start`."""
        with self._lock(spec.server_id):
            folder = self.folder(spec.server_id)
            backup = folder / RESIZE_BACKUP
            if spec.root_volume is None and not backup.exists():
                raise NotFound(f"server {spec.server_id} has no disk from before its resize")
            self._shut_down(spec.server_id, graceful=False)
            if spec.root_volume is None:
                os.replace(backup, folder / qemu.DISK)
            if not start:
                (folder / "shutoff").touch()
                return self.status(spec.server_id)
            return self._boot(spec)

    # -- rescue -----------------------------------------------------------------

    def rescue(self, spec: GuestSpec) -> GuestStatus:
        """Shut down, then boot a fresh disk of the rescue image with the server's disk second."""
        if spec.rescue_image_id is None:
            raise KumoError("rescue needs an image to boot")
        with self._lock(spec.server_id):
            self._shut_down(spec.server_id)
            fmt = self._new_disk(spec, spec.rescue_image_id, qemu.RESCUE_DISK)
            record = self._record(spec.server_id)
            record["rescue_format"] = fmt
            self._write_record(spec.server_id, record)
            return self._boot(spec)

    def unrescue(self, spec: GuestSpec) -> GuestStatus:
        """Stop the rescue guest, drop its disk, boot the server's own disk again."""
        with self._lock(spec.server_id):
            self._shut_down(spec.server_id, graceful=False)
            (self.folder(spec.server_id) / qemu.RESCUE_DISK).unlink(missing_ok=True)
            return self._boot(spec)
