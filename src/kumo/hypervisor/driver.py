"""The seam between the compute part (Nova API, server records) and one hypervisor host.

`compute` decides *what* should run; a `Hypervisor` makes it so on this host with
QEMU. Everything here is plain data, so compute's tests can use a small fake and
the hypervisor's tests can boot real guests without the API.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol


@dataclass(frozen=True)
class PortForward:
    """Forward host 127.0.0.1:host_port (0 = pick a free one) to guest_port."""

    protocol: str  # "tcp" | "udp"
    guest_port: int
    host_port: int = 0


@dataclass(frozen=True)
class Nic:
    """A guest NIC on a real network: a tap the network part made, inside `netns`."""

    port_id: str
    mac: str
    tap: str
    mtu: int


@dataclass(frozen=True)
class VolumeDisk:
    """A volume as this host's QEMU opens it (what nova calls connection_info).

    `source` is the protocol layer of QEMU's `-blockdev` (`{"driver": "file",
    "filename": ...}` for kumo's file volumes; an `rbd` or `nbd` node for others);
    `format` is the layer on top of it, always pinned, never probed.
    """

    volume_id: str
    source: dict[str, Any]
    format: str  # "qcow2" | "raw"
    read_only: bool = False


@dataclass(frozen=True)
class GuestSpec:
    """Everything needed to start (or restart) one server on this host."""

    server_id: str
    name: str
    image_id: str
    vcpus: int
    memory_mb: int
    root_gb: int  # 0: the image's own virtual size
    forwards: tuple[PortForward, ...] = ()
    config_drive: Path | None = None  # an ISO (label config-2) built by `metadata`
    metadata_socket: Path | None = None  # unix socket of this server's metadata channel
    allow_outbound: bool = False
    # Real networks: the NICs (in order) and the namespace their taps live in. With
    # `netns` unset the guest gets QEMU user-mode networking instead.
    nics: tuple[Nic, ...] = ()
    netns: str | None = None
    # Rescue: boot this image's disk first, the server's own disk attached second.
    rescue_image_id: str | None = None
    # Boot from volume: the root disk is this volume (no local disk is made).
    root_volume: VolumeDisk | None = None
    # Volumes attached to the server, plugged at start (each on its own PCIe root port).
    volumes: tuple[VolumeDisk, ...] = ()


class GuestState(Enum):
    RUNNING = "running"
    SHUTOFF = "shutoff"  # stopped on purpose, or the guest powered itself off
    CRASHED = "crashed"  # QEMU died without being asked to
    MISSING = "missing"  # this host knows nothing of the server


@dataclass(frozen=True)
class GuestStatus:
    state: GuestState
    host_ports: dict[str, int] = field(default_factory=dict)  # "tcp/22" -> 127.0.0.1 port
    fault: str | None = None  # why it is CRASHED, in words a user can act on
    pid: int | None = None


class Hypervisor(Protocol):
    """One host's guests. Methods block until done; callers run them off the event loop.

    Failures raise `kumo.errors.KumoError` subclasses whose message is fit to show a
    user as the server's fault (KVM unavailable, not enough memory, disk full, QEMU's
    own stderr).
    """

    def spawn(self, spec: GuestSpec) -> GuestStatus:
        """Cache the image (`_base`), create the root disk overlay, start QEMU."""

    def power_on(self, spec: GuestSpec) -> GuestStatus:
        """Start a SHUTOFF guest again on its existing disk."""

    def power_off(self, server_id: str, *, graceful: bool = True, timeout: float = 60) -> None:
        """ACPI power-down, then force off after `timeout` (or at once if not graceful)."""

    def reboot(self, server_id: str, *, hard: bool = False) -> GuestStatus:
        """Soft: ask the guest (ACPI); hard: reset the virtual machine."""

    def destroy(self, server_id: str) -> None:
        """Stop QEMU if running and remove every file of the server."""

    def status(self, server_id: str) -> GuestStatus:
        """What the guest is doing now (never raises for an unknown server: MISSING)."""

    def console_log(self, server_id: str, length: int | None = None) -> str:
        """The serial console output; the last `length` lines when given."""

    def console_socket(self, server_id: str, kind: str) -> Path:
        """The unix socket of the guest's `vnc` screen or `serial` port (may not exist)."""

    def set_forwards(self, server_id: str, forwards: tuple[PortForward, ...]) -> dict[str, int]:
        """Replace the running guest's host forwards (security-group change)."""

    def snapshot(self, server_id: str, dest: Path) -> str:
        """Write a standalone image of the root disk to `dest`; return its disk_format."""

    def adopt(self) -> dict[str, GuestStatus]:
        """After a restart of kumo: the guests still running on this host, by server id."""

    # -- nova's other server actions (kumo.hypervisor.lifecycle) ---------------

    def pause(self, server_id: str) -> None:
        """Freeze the guest's vCPUs in memory (QMP stop)."""

    def unpause(self, server_id: str) -> None:
        """Let a paused guest run on (QMP cont)."""

    def suspend(self, server_id: str) -> None:
        """Save the guest's memory to disk and stop QEMU (libvirt's managed save)."""

    def resume(self, spec: GuestSpec) -> GuestStatus:
        """Start QEMU again from the saved memory: the guest runs on where it was."""

    def rebuild(self, spec: GuestSpec, *, start: bool) -> GuestStatus:
        """A new root disk from `spec.image_id` (the old one is gone); started if `start`."""

    def resize(self, spec: GuestSpec, *, start: bool) -> GuestStatus:
        """Stop, keep the disk for a revert, grow it to `spec.root_gb`, start with the new
        vCPUs and RAM if `start`."""

    def confirm_resize(self, server_id: str) -> None:
        """Drop the disk kept for a revert."""

    def revert_resize(self, spec: GuestSpec, *, start: bool) -> GuestStatus:
        """Put the disk from before the resize back; start with the old flavor if `start`."""

    def rescue(self, spec: GuestSpec) -> GuestStatus:
        """Stop, then boot `spec.rescue_image_id` with the server's disk as the second disk."""

    def unrescue(self, spec: GuestSpec) -> GuestStatus:
        """Stop the rescue guest, drop its disk, boot the server's own disk again."""

    def attach_volume(self, server_id: str, disk: VolumeDisk) -> None:
        """Hot-plug `disk` into the running guest (nothing to do when it is not running)."""

    def detach_volume(self, server_id: str, volume_id: str) -> None:
        """Unplug the volume; waits for the guest to let go (a fault if it never does)."""

    def extend_volume(self, server_id: str, volume_id: str, size: int) -> None:
        """Tell the running guest's QEMU the volume now has `size` bytes."""

    def quiesced(self, server_id: str) -> AbstractContextManager[None]:
        """Hold a running guest still (I/O drained and flushed) for a consistent copy."""
