"""In-memory stand-ins for the hypervisor, the metadata channels and the image service.

Used only by compute's unit and API tests: they keep state the way the real parts
do (a guest is RUNNING until powered off, forwards get host ports, a killed guest
is CRASHED), so the compute logic is exercised without booting QEMU.
"""

from __future__ import annotations

import contextlib
import itertools
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.compute.images import BootImage
from kumo.errors import KumoError, NotFound
from kumo.hypervisor.driver import GuestSpec, GuestState, GuestStatus, PortForward, VolumeDisk


@dataclass
class Guest:
    spec: GuestSpec
    state: GuestState = GuestState.RUNNING
    ports: dict[str, int] = field(default_factory=dict)
    console: list[str] = field(default_factory=list)
    fault: str | None = None
    paused: bool = False
    saved: bool = False  # suspended: memory on disk
    backup: GuestSpec | None = None  # the spec (and disk) from before a resize
    disk_image: str | None = None
    plugged: dict[str, VolumeDisk] = field(default_factory=dict)  # hot-plugged volumes


class FakeHypervisor:
    """Implements `kumo.hypervisor.driver.Hypervisor` in memory."""

    def __init__(self) -> None:
        self.guests: dict[str, Guest] = {}
        self.fail_spawn: str | None = None  # message of the KumoError spawn raises
        self.fail_detach: str | None = None  # message of the KumoError detach raises
        self.calls: list[tuple[str, str]] = []
        self.snapshots: list[Path] = []
        self.console_dir: Path | None = None
        self._ports = itertools.count(40000)
        self._lock = threading.Lock()

    def _forward(self, guest: Guest, forwards: tuple[PortForward, ...]) -> dict[str, int]:
        guest.ports = {f"{f.protocol}/{f.guest_port}": f.host_port or next(self._ports)
                       for f in forwards}
        return dict(guest.ports)

    def _status(self, guest: Guest) -> GuestStatus:
        running = guest.state is GuestState.RUNNING
        return GuestStatus(guest.state, dict(guest.ports) if running else {}, guest.fault,
                           pid=4242 if running else None)

    def spawn(self, spec: GuestSpec) -> GuestStatus:
        self.calls.append(("spawn", spec.server_id))
        if self.fail_spawn:
            raise KumoError(self.fail_spawn)
        with self._lock:
            guest = Guest(spec, console=[f"Booting {spec.name}", "login:"])
            self._forward(guest, spec.forwards)
            self.guests[spec.server_id] = guest
            return self._status(guest)

    def _guest(self, server_id: str) -> Guest:
        guest = self.guests.get(server_id)
        if guest is None:
            raise NotFound(f"no guest {server_id}")
        return guest

    def power_on(self, spec: GuestSpec) -> GuestStatus:
        self.calls.append(("power_on", spec.server_id))
        guest = self._guest(spec.server_id)
        guest.state, guest.fault, guest.spec = GuestState.RUNNING, None, spec
        self._forward(guest, spec.forwards)
        guest.console.append("Booting again")
        return self._status(guest)

    def power_off(self, server_id: str, *, graceful: bool = True, timeout: float = 60) -> None:
        self.calls.append(("power_off", server_id))
        guest = self._guest(server_id)
        guest.state, guest.ports = GuestState.SHUTOFF, {}

    def reboot(self, server_id: str, *, hard: bool = False) -> GuestStatus:
        self.calls.append(("reboot_hard" if hard else "reboot", server_id))
        guest = self._guest(server_id)
        guest.console.append("Rebooting")
        return self._status(guest)

    def destroy(self, server_id: str) -> None:
        self.calls.append(("destroy", server_id))
        self.guests.pop(server_id, None)

    def status(self, server_id: str) -> GuestStatus:
        guest = self.guests.get(server_id)
        return GuestStatus(GuestState.MISSING) if guest is None else self._status(guest)

    def console_log(self, server_id: str, length: int | None = None) -> str:
        lines = self._guest(server_id).console
        return "\n".join(lines[-length:] if length else lines) + "\n"

    def console_socket(self, server_id: str, kind: str) -> Path:
        """Where a test may serve the guest's `vnc` or `serial` socket (short: AF_UNIX)."""
        if server_id not in self.guests:
            raise NotFound(f"server {server_id} is not on this host")
        if self.console_dir is None:
            self.console_dir = Path(tempfile.mkdtemp(prefix="kumo-console-"))
        return self.console_dir / f"{server_id[:8]}-{kind}.sock"

    def set_forwards(self, server_id: str, forwards: tuple[PortForward, ...]) -> dict[str, int]:
        self.calls.append(("set_forwards", server_id))
        return self._forward(self._guest(server_id), forwards)

    def snapshot(self, server_id: str, dest: Path) -> str:
        self._guest(server_id)
        dest.write_bytes(b"QFI\xfb snapshot of " + server_id.encode())
        self.snapshots.append(dest)
        return "qcow2"

    def adopt(self) -> dict[str, GuestStatus]:
        return {sid: self._status(g) for sid, g in self.guests.items()
                if g.state is GuestState.RUNNING}

    # nova's other actions, kept as a guest would show them
    def pause(self, server_id: str) -> None:
        self.calls.append(("pause", server_id))
        self._guest(server_id).paused = True

    def unpause(self, server_id: str) -> None:
        self.calls.append(("unpause", server_id))
        self._guest(server_id).paused = False

    def suspend(self, server_id: str) -> None:
        self.calls.append(("suspend", server_id))
        guest = self._guest(server_id)
        guest.state, guest.ports, guest.saved = GuestState.SHUTOFF, {}, True

    def resume(self, spec: GuestSpec) -> GuestStatus:
        self.calls.append(("resume", spec.server_id))
        guest = self._guest(spec.server_id)
        assert guest.saved, "resume without saved memory"
        guest.state, guest.saved = GuestState.RUNNING, False
        self._forward(guest, spec.forwards)
        return self._status(guest)

    def rebuild(self, spec: GuestSpec, *, start: bool) -> GuestStatus:
        self.calls.append(("rebuild", spec.server_id))
        guest = self._guest(spec.server_id)
        guest.spec, guest.disk_image = spec, spec.image_id
        guest.state = GuestState.RUNNING if start else GuestState.SHUTOFF
        self._forward(guest, spec.forwards if start else ())
        return self._status(guest)

    def resize(self, spec: GuestSpec, *, start: bool) -> GuestStatus:
        self.calls.append(("resize", spec.server_id))
        guest = self._guest(spec.server_id)
        guest.backup, guest.spec = guest.spec, spec
        guest.state = GuestState.RUNNING if start else GuestState.SHUTOFF
        return self._status(guest)

    def confirm_resize(self, server_id: str) -> None:
        self.calls.append(("confirm_resize", server_id))
        self._guest(server_id).backup = None

    def revert_resize(self, spec: GuestSpec, *, start: bool) -> GuestStatus:
        self.calls.append(("revert_resize", spec.server_id))
        guest = self._guest(spec.server_id)
        assert guest.backup is not None, "revert without a kept disk"
        guest.spec, guest.backup = spec, None
        guest.state = GuestState.RUNNING if start else GuestState.SHUTOFF
        return self._status(guest)

    def rescue(self, spec: GuestSpec) -> GuestStatus:
        self.calls.append(("rescue", spec.server_id))
        guest = self._guest(spec.server_id)
        guest.spec, guest.state = spec, GuestState.RUNNING
        return self._status(guest)

    def unrescue(self, spec: GuestSpec) -> GuestStatus:
        self.calls.append(("unrescue", spec.server_id))
        guest = self._guest(spec.server_id)
        guest.spec, guest.state = spec, GuestState.RUNNING
        return self._status(guest)
    def attach_volume(self, server_id: str, disk: VolumeDisk) -> None:
        self.calls.append(("attach_volume", disk.volume_id))
        guest = self._guest(server_id)
        if guest.state is GuestState.RUNNING:
            guest.plugged[disk.volume_id] = disk

    def detach_volume(self, server_id: str, volume_id: str) -> None:
        self.calls.append(("detach_volume", volume_id))
        if self.fail_detach:
            raise KumoError(self.fail_detach)
        self._guest(server_id).plugged.pop(volume_id, None)

    def extend_volume(self, server_id: str, volume_id: str, size: int) -> None:
        self.calls.append(("extend_volume", volume_id))

    @contextlib.contextmanager
    def quiesced(self, server_id: str) -> Iterator[None]:
        self.calls.append(("quiesced", server_id))
        yield

    # test helpers: what happens outside kumo's control
    def kill(self, server_id: str, why: str = "QEMU was killed by signal 9") -> None:
        guest = self.guests[server_id]
        guest.state, guest.fault, guest.ports = GuestState.CRASHED, why, {}


class FakeMetadata:
    """The channel half of the metadata service."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.open: set[str] = set()

    def open_channel(self, server_id: str) -> Path:
        self.open.add(server_id)
        return self.folder / f"{server_id}.sock"

    def close_channel(self, server_id: str) -> None:
        self.open.discard(server_id)


class FakeImages:
    """A tiny image registry: boot facts and snapshots."""

    def __init__(self) -> None:
        self.images: dict[str, BootImage] = {}
        self.uploaded: dict[str, bytes] = {}
        self.abandoned: list[str] = []
        self._ids = itertools.count(1)

    def add(self, image: BootImage) -> BootImage:
        self.images[image.id] = image
        return image

    def boot_image(self, session: Session, context: RequestContext, image_id: str) -> BootImage:
        image = self.images.get(image_id)
        if image is None:
            raise NotFound(f"No image found with ID {image_id}")
        return image

    def reserve_snapshot(self, context: RequestContext, name: str, disk_format: str,
                         properties: dict[str, str], min_disk: int, min_ram: int) -> str:
        image_id = f"00000000-0000-4000-8000-{next(self._ids):012d}"
        self.images[image_id] = BootImage(image_id, name, "queued", min_disk, min_ram,
                                          properties=properties)
        return image_id

    def upload_snapshot(self, context: RequestContext, image_id: str, source: Path) -> None:
        self.uploaded[image_id] = source.read_bytes()
        old = self.images[image_id]
        self.images[image_id] = BootImage(old.id, old.name, "active", old.min_disk, old.min_ram,
                                          properties=old.properties)

    def abandon_snapshot(self, context: RequestContext, image_id: str) -> None:
        self.abandoned.append(image_id)
        self.images.pop(image_id, None)

    def backups(self, context: RequestContext, server_id: str, backup_type: str) -> list[str]:
        return [i.id for i in self.images.values()
                if i.properties.get("instance_uuid") == server_id
                and i.properties.get("image_type") == "backup"
                and i.properties.get("backup_type") == backup_type]
    def activate_mapped(self, image_id: str, properties: dict[str, str]) -> None:
        old = self.images[image_id]
        self.images[image_id] = BootImage(old.id, old.name, "active", old.min_disk, old.min_ram,
                                          properties={**old.properties, **properties})
