"""nova's libvirt image cache: base files in `DATA/instances/_base`, instance disks on top.

Layout (as nova's):
- `_base/<sha1(image_id)>`: the image, converted to raw when `force_raw_images`.
- `_base/<sha1(image_id)>_<GB>`: a copy grown to GB (made for `use_cow_images = False`,
  where every instance disk is a full copy of it).
- `_base/locks/<fingerprint>.lock`: fcntl locks, so one download per image even when
  several servers (or several kumo processes) boot it at once.
- `_base/meta/<fingerprint>.json`: which image a base file holds (sha1 is one-way).

A base is fetched to `<fp>.part`, checked against the image's md5 and os_hash_value,
its format detected and compared with Glance's disk_format, and safety-checked with
`qemu-img info -f <disk_format>` (no backing file, no data file) before it is
renamed into place, and again before every instance disk is made from it.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kumo.config import ComputeSettings
from kumo.diskformat import qemuimg
from kumo.errors import BadRequest, InsufficientStorage
from kumo.hypervisor.fetcher import FetchedImage, ImageFetcher

log = logging.getLogger("kumo.hypervisor.imagecache")

GiB = 1024**3
CHUNK = 1024 * 1024
# What a file's own header may say for each Glance disk_format (raw disks often
# carry a partition table or are ISOs; anything else inside "raw" is refused).
# (ami is a whole raw disk; oslo has no inspector for ploop, which qemu-img checks.)
ACCEPTED_DETECTIONS = {"raw": {"raw", "gpt", "iso"}, "iso": {"iso", "raw"},
                       "ami": {"raw", "gpt", "iso"}, "ploop": {"raw"}}


def fingerprint(image_id: str) -> str:
    """nova's base file name: sha1 of the image id."""
    return hashlib.sha1(image_id.encode()).hexdigest()


@dataclass(frozen=True)
class BaseImage:
    image_id: str
    path: Path
    format: str  # format of the base file itself (raw after force_raw_images)
    virtual_size: int


@dataclass(frozen=True)
class InstanceDisk:
    path: Path
    format: str  # "qcow2" overlay or a full copy
    base: Path
    cdrom: Path | None = None  # an ISO image: the installer CD next to a blank disk


def qemu_format(disk_format: str) -> str:
    """What QEMU calls a Glance disk_format (vhd is `vpc`, an ISO is raw bytes to QEMU)."""
    return qemuimg.driver(disk_format)


def _fallocate_keep_size(path: Path, size: int) -> None:
    """Reserve `size` bytes for `path` without changing its length (fallocate -n)."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(path, os.O_RDWR)
    try:
        falloc_keep_size = 1
        if libc.fallocate(fd, falloc_keep_size, ctypes.c_long(0), ctypes.c_long(size)) != 0:
            err = ctypes.get_errno()
            if err == errno.ENOSPC:
                raise InsufficientStorage(f"disk full: cannot preallocate {size} bytes for {path}")
            log.warning("preallocate_images = space: fallocate failed on %s: %s",
                        path, os.strerror(err))
    finally:
        os.close(fd)


def _hashes(path: Path, algo: str) -> tuple[str, str]:
    md5 = hashlib.md5(usedforsecurity=False)
    multi = hashlib.new(algo)
    with path.open("rb") as data:
        while chunk := data.read(CHUNK):
            md5.update(chunk)
            multi.update(chunk)
    return md5.hexdigest(), multi.hexdigest()


def verify_download(path: Path, fetched: FetchedImage, image_id: str) -> None:
    """Refuse bytes whose size or hashes differ from the image record."""
    size = path.stat().st_size
    if fetched.size and size != fetched.size:
        raise BadRequest(f"image {image_id}: got {size} bytes, the image record says "
                         f"{fetched.size}")
    md5, multi = _hashes(path, fetched.os_hash_algo)
    if fetched.checksum and md5 != fetched.checksum:
        raise BadRequest(f"image {image_id}: md5 {md5} does not match checksum "
                         f"{fetched.checksum}")
    if fetched.os_hash_value and multi != fetched.os_hash_value:
        raise BadRequest(f"image {image_id}: {fetched.os_hash_algo} does not match "
                         "os_hash_value")


def check_format(path: Path, disk_format: str) -> qemuimg.ImageInfo:
    """The file is what Glance says it is, and points at no other file."""
    from oslo_utils.imageutils import format_inspector

    inspector = format_inspector.detect_file_format(str(path))
    detected = str(inspector) if inspector is not None else "raw"
    accepted = ACCEPTED_DETECTIONS.get(disk_format, {disk_format})
    if detected not in accepted:
        raise BadRequest(f"{path.name}: disk_format is {disk_format} but the data is "
                         f"{detected}; refused")
    if inspector is not None:
        try:
            inspector.safety_check()
        except format_inspector.SafetyCheckFailed as exc:
            raise BadRequest(f"{path.name}: failed the safety check: {exc}") from None
    return qemuimg.check_safe(path, qemu_format(disk_format))


class ImageCache:
    """The `_base` folder of one host and the instance disks made from it."""

    def __init__(
        self,
        base_dir: Path,
        fetcher: ImageFetcher,
        settings: ComputeSettings,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.base_dir = base_dir
        self.fetcher = fetcher
        self.settings = settings
        self.clock = clock
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    # -- naming ------------------------------------------------------------

    def base_path(self, image_id: str, resized_gb: int | None = None) -> Path:
        name = fingerprint(image_id)
        return self.base_dir / (name if resized_gb is None else f"{name}_{resized_gb}")

    def meta_path(self, name: str) -> Path:
        return self.base_dir / "meta" / f"{name}.json"

    def read_meta(self, name: str) -> dict[str, str]:
        """What is known of base file `name` (its fingerprint part): image id, format."""
        try:
            data = json.loads(self.meta_path(name.split("_")[0]).read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in data.items()}

    @contextlib.contextmanager
    def locked(self, name: str) -> Iterator[None]:
        """Hold base file `name`'s lock: a thread lock here, an fcntl lock across processes."""
        key = name.split("_")[0]
        with self._locks_guard:
            thread_lock = self._locks.setdefault(key, threading.Lock())
        with thread_lock:
            lock_dir = self.base_dir / "locks"
            lock_dir.mkdir(parents=True, exist_ok=True)
            with open(lock_dir / f"{key}.lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    # -- base files --------------------------------------------------------

    def ensure_base(self, image_id: str) -> BaseImage:
        """The cached, safety-checked base of `image_id`; fetched once if missing."""
        path = self.base_path(image_id)
        with self.locked(path.name):
            return self._ensure_base_locked(image_id, path)

    def _ensure_base_locked(self, image_id: str, path: Path) -> BaseImage:
        if not path.exists():
            self._fetch(image_id, path)
        fmt = self.read_meta(path.name).get("format", "raw")
        info = qemuimg.check_safe(path, fmt)
        now = self.clock()
        os.utime(path, (now, now))  # nova touches a base on use: its age counts from here
        return BaseImage(image_id, path, fmt, info.virtual_size)

    def _fetch(self, image_id: str, path: Path) -> None:
        self.base_dir.mkdir(parents=True, exist_ok=True)
        part = path.with_name(path.name + ".part")
        converted = path.with_name(path.name + ".converted")
        try:
            log.info("fetching image %s into %s", image_id, path)
            fetched = self.fetcher.fetch(image_id, part)
            verify_download(part, fetched, image_id)
            check_format(part, fetched.disk_format)
            fmt = qemu_format(fetched.disk_format)
            if self.settings.force_raw_images and fmt != "raw":
                qemuimg.convert(part, fmt, converted, "raw")
                qemuimg.check_safe(converted, "raw")
                part.unlink()
                os.replace(converted, part)
                fmt = "raw"
            meta = self.meta_path(path.name)
            meta.parent.mkdir(parents=True, exist_ok=True)
            tmp = meta.with_name(meta.name + ".tmp")
            tmp.write_text(json.dumps({
                "image_id": image_id, "format": fmt, "disk_format": fetched.disk_format,
            }))
            os.replace(tmp, meta)
            os.replace(part, path)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise InsufficientStorage(
                    f"disk full while caching image {image_id} in {self.base_dir}"
                ) from None
            raise
        finally:
            for leftover in (part, converted):
                leftover.unlink(missing_ok=True)

    def _resized_base(self, base: BaseImage, size_gb: int) -> Path:
        """`<fp>_<GB>`: the base grown to size_gb, made once per size (raw stays raw)."""
        resized = self.base_path(base.image_id, size_gb)
        if not resized.exists():
            tmp = resized.with_name(resized.name + ".part")
            try:
                qemuimg.convert(base.path, base.format, tmp, base.format)  # keeps holes
                qemuimg.resize(tmp, base.format, size_gb * GiB)
                os.replace(tmp, resized)
            finally:
                tmp.unlink(missing_ok=True)
        now = self.clock()
        os.utime(resized, (now, now))
        return resized

    # -- instance disks ----------------------------------------------------

    def create_disk(self, image_id: str, disk: Path, root_gb: int) -> InstanceDisk:
        """The instance's root disk: a qcow2 overlay on the base (use_cow_images) or a copy.

        Grown to `root_gb` (0: the image's own size); a disk smaller than the image's
        virtual size is refused, as nova's FlavorDiskSmallerThanImage.
        """
        base_path = self.base_path(image_id)
        with self.locked(base_path.name):
            base = self._ensure_base_locked(image_id, base_path)
            if self.read_meta(base_path.name).get("disk_format") == "iso":
                return self._blank_disk(base, disk, root_gb)
            size = root_gb * GiB if root_gb else base.virtual_size
            if size < base.virtual_size:
                raise BadRequest(
                    f"Flavor's disk is too small for requested image. Flavor disk is "
                    f"{size} bytes ({root_gb} GB), image is {base.virtual_size} bytes."
                )
            tmp = disk.with_name(disk.name + ".part")
            try:
                if self.settings.use_cow_images:
                    qemuimg.create_overlay(base.path, base.format, tmp, size)
                    result = InstanceDisk(disk, "qcow2", base.path)
                else:
                    source = base.path
                    if root_gb and size > base.virtual_size:
                        source = self._resized_base(base, root_gb)
                    qemuimg.convert(source, base.format, tmp, base.format)  # keeps holes
                    result = InstanceDisk(disk, base.format, source)
                if self.settings.preallocate_images == "space":
                    _fallocate_keep_size(tmp, size)
                os.replace(tmp, disk)
            except OSError as exc:
                if exc.errno == errno.ENOSPC:
                    raise InsufficientStorage(f"disk full while creating {disk}") from None
                raise
            finally:
                tmp.unlink(missing_ok=True)
            return result

    def _blank_disk(self, base: BaseImage, disk: Path, root_gb: int) -> InstanceDisk:
        """nova's boot from an ISO: the image is the CD, the root disk a blank one of the
        flavor's size (the installer writes the system there)."""
        if not root_gb:
            raise BadRequest("Booting from an ISO image needs a flavor with a root disk "
                             "(disk > 0): the installer writes the system to it")
        tmp = disk.with_name(disk.name + ".part")
        try:
            qemuimg.create(tmp, "qcow2", root_gb * GiB)
            os.replace(tmp, disk)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise InsufficientStorage(f"disk full while creating {disk}") from None
            raise
        finally:
            tmp.unlink(missing_ok=True)
        return InstanceDisk(disk, "qcow2", base.path, cdrom=base.path)
