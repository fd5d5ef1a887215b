"""The seam between Block Storage's rules and where volume bytes live.

A `VolumeDriver` makes, copies, grows and removes volumes and snapshots, and says
how QEMU opens a volume (`disk()`). The rules (statuses, quotas, who may do what)
never look past this interface, so an LVM or Ceph RBD driver is one more class in
`DRIVERS`. Every method blocks; the volume service calls them on worker threads.

Drivers must be crash-safe: an operation either leaves a complete volume or
snapshot behind or nothing that `sweep()` does not remove at the next start.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

from kumo.config import Settings
from kumo.errors import ServiceUnavailable
from kumo.hypervisor.driver import VolumeDisk

GIB = 1024**3


class VolumeDriver(ABC):
    """One storage backend. Locations are the driver's own references (Cinder's
    provider_location), stored with the record and handed back unchanged."""

    name: ClassVar[str]

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @abstractmethod
    def create_blank(self, volume_id: str, size: int) -> str:
        """An empty volume of `size` bytes (thin: no space used until written)."""

    @abstractmethod
    def create_from_image(self, volume_id: str, image: Path, image_format: str,
                          size: int) -> str:
        """A volume holding the image file's disk (format pinned), grown to `size` bytes."""

    @abstractmethod
    def clone(self, volume_id: str, source: str, size: int) -> str:
        """A new volume with the contents of volume `source` (quiesced by the caller)."""

    @abstractmethod
    def create_snapshot(self, snapshot_id: str, volume: str) -> str:
        """A point-in-time copy of volume `volume` (quiesced by the caller)."""

    @abstractmethod
    def create_from_snapshot(self, volume_id: str, snapshot: str, size: int) -> str:
        """A new volume starting from `snapshot`; the snapshot must outlive it if the
        driver says so in `snapshot_has_dependents`."""

    @abstractmethod
    def extend(self, volume: str, size: int) -> None:
        """Grow a volume no QEMU has open to `size` bytes."""

    @abstractmethod
    def export(self, volume: str, dest: Path, disk_format: str) -> None:
        """Write the volume as a standalone image file in `disk_format` (upload to image)."""

    @abstractmethod
    def delete(self, volume: str) -> None:
        """Remove a volume (gone already is fine)."""

    @abstractmethod
    def delete_snapshot(self, snapshot: str) -> None:
        """Remove a snapshot (gone already is fine)."""

    @abstractmethod
    def virtual_size(self, volume: str) -> int:
        """The volume's size in bytes as the backend holds it now."""

    @abstractmethod
    def disk(self, volume_id: str, volume: str, *, read_only: bool = False) -> VolumeDisk:
        """How QEMU opens the volume (its -blockdev protocol node and format)."""

    @abstractmethod
    def sweep(self) -> list[str]:
        """Remove what interrupted operations left behind; return what was removed."""

    def snapshot_has_dependents(self) -> bool:
        """Whether volumes made from a snapshot keep needing it (copy-on-write)."""
        return False


def _drivers() -> dict[str, type[VolumeDriver]]:
    from kumo.volume.qcow2 import Qcow2Driver

    return {Qcow2Driver.name: Qcow2Driver}


def build_driver(settings: Settings) -> VolumeDriver:
    """The configured driver (`[DEFAULT] volume_driver`)."""
    drivers = _drivers()
    found = drivers.get(settings.volume.volume_driver)
    if found is None:
        raise ServiceUnavailable(f"unknown volume_driver {settings.volume.volume_driver!r}; "
                                 f"kumo has {', '.join(sorted(drivers))}")
    return found(settings)
