"""kumo's default volume driver: thin qcow2 files in `DATA/volumes/`.

`volume-<id>` and `snapshot-<id>`, as Cinder's NFS driver names them. Everything is
made with qemu-img (formats always pinned) into `<name>.part`, flushed to disk and
renamed into place, so a crash leaves either a whole file or a `.part` that
`sweep()` removes. Snapshots are standalone copies; a volume made from a snapshot
is a qcow2 overlay on it (instant and thin), so a snapshot with such volumes cannot
be deleted. Copies of a volume QEMU has open are made with `-U` while the guest is
paused by the caller.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from kumo.diskformat import qemuimg
from kumo.errors import BadRequest, InsufficientStorage, ToolError
from kumo.hypervisor.driver import VolumeDisk
from kumo.volume.driver import VolumeDriver

PART = ".part"


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Qcow2Driver(VolumeDriver):
    name = "qcow2"

    @property
    def folder(self) -> Path:
        return self.settings.volumes_dir

    def _path(self, location: str) -> Path:
        if not location or "/" in location or location.startswith("."):
            raise BadRequest(f"not a volume file of this driver: {location!r}")
        return self.folder / location

    @contextlib.contextmanager
    def _writing(self, name: str) -> Iterator[Path]:
        """Yield `<name>.part` to fill; on success flush it and rename it to `name`."""
        self.folder.mkdir(parents=True, exist_ok=True)
        final = self.folder / name
        partial = final.with_name(name + PART)
        partial.unlink(missing_ok=True)
        try:
            yield partial
            _fsync(partial)
            os.replace(partial, final)
            _fsync(self.folder)
        except ToolError as exc:
            partial.unlink(missing_ok=True)
            if "No space left" in exc.message:
                raise InsufficientStorage(f"disk full while writing {name}: {exc.message}") \
                    from None
            raise
        except BaseException:
            partial.unlink(missing_ok=True)
            raise

    def _make(self, name: str, fill: Callable[[Path], None]) -> str:
        with self._writing(name) as partial:
            fill(partial)
        return name

    def create_blank(self, volume_id: str, size: int) -> str:
        return self._make(f"volume-{volume_id}",
                          lambda part: qemuimg.create(part, "qcow2", size))

    def create_from_image(self, volume_id: str, image: Path, image_format: str,
                          size: int) -> str:
        # The same refusals as the image cache: no backing file, no external data file.
        found = qemuimg.check_safe(image, image_format)
        if found.virtual_size > size:
            raise BadRequest(f"Image virtual size is {_gib(found.virtual_size)}GB and doesn't "
                             f"fit in a volume of size {_gib(size)}GB.")

        def fill(part: Path) -> None:
            qemuimg.convert(image, image_format, part, "qcow2")
            if size > found.virtual_size:
                qemuimg.resize(part, "qcow2", size)

        return self._make(f"volume-{volume_id}", fill)

    def clone(self, volume_id: str, source: str, size: int) -> str:
        return self._make(f"volume-{volume_id}", lambda part: self._copy(source, part, size))

    def _copy(self, source: str, part: Path, size: int | None = None) -> None:
        # -U: the source may be open in a (paused) QEMU; the result has no backing file.
        qemuimg.convert(self._path(source), "qcow2", part, "qcow2", force_share=True)
        if size is not None and size > qemuimg.info(part, "qcow2").virtual_size:
            qemuimg.resize(part, "qcow2", size)

    def create_snapshot(self, snapshot_id: str, volume: str) -> str:
        return self._make(f"snapshot-{snapshot_id}", lambda part: self._copy(volume, part))

    def create_from_snapshot(self, volume_id: str, snapshot: str, size: int) -> str:
        base = self._path(snapshot)
        if not base.exists():
            raise BadRequest(f"the snapshot's file {snapshot} is missing")
        # A relative backing path resolves against the overlay's folder: the data
        # directory can move.
        return self._make(f"volume-{volume_id}", lambda part: qemuimg.create_overlay(
            Path(snapshot), "qcow2", part, size))

    def extend(self, volume: str, size: int) -> None:
        qemuimg.resize(self._path(volume), "qcow2", size)
        _fsync(self._path(volume))

    def export(self, volume: str, dest: Path, disk_format: str) -> None:
        qemuimg.convert(self._path(volume), "qcow2", dest, disk_format, force_share=True)

    def delete(self, volume: str) -> None:
        self._path(volume).unlink(missing_ok=True)

    def delete_snapshot(self, snapshot: str) -> None:
        self._path(snapshot).unlink(missing_ok=True)

    def virtual_size(self, volume: str) -> int:
        return qemuimg.info(self._path(volume), "qcow2").virtual_size

    def disk(self, volume_id: str, volume: str, *, read_only: bool = False) -> VolumeDisk:
        return VolumeDisk(volume_id, {"driver": "file", "filename": str(self._path(volume))},
                          "qcow2", read_only=read_only)

    def sweep(self) -> list[str]:
        if not self.folder.is_dir():
            return []
        swept = []
        for leftover in self.folder.glob("*" + PART):
            leftover.unlink(missing_ok=True)
            swept.append(str(leftover))
        return swept

    def snapshot_has_dependents(self) -> bool:
        return True


def _gib(size: int) -> int:
    return -(-size // 1024**3)
