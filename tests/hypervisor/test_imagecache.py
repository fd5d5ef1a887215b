"""The `_base` image cache: naming, verification, one download, instance disks."""

from __future__ import annotations

import hashlib
import shutil
import threading
import time
from pathlib import Path

import pytest

from kumo.config import ComputeSettings
from kumo.diskformat import qemuimg
from kumo.errors import BadRequest
from kumo.hypervisor.fetcher import FetchedImage
from kumo.hypervisor.imagecache import GiB, ImageCache, fingerprint

MiB = 1024 * 1024


def make_image(path: Path, fmt: str, size: int = 8 * MiB) -> Path:
    qemuimg.create(path, fmt, size)
    if fmt == "raw":  # some recognisable bytes
        with path.open("r+b") as data:
            data.write(b"kumo-test-image" * 100)
    return path


class FakeFetcher:
    """Serves local files as images, with the checksums an image record would carry."""

    def __init__(self, delay: float = 0.0) -> None:
        self.images: dict[str, tuple[Path, str]] = {}
        self.lies: dict[str, FetchedImage] = {}
        self.calls: list[str] = []
        self.delay = delay
        self._lock = threading.Lock()

    def add(self, image_id: str, path: Path, disk_format: str) -> None:
        self.images[image_id] = (path, disk_format)

    def fetch(self, image_id: str, dest_partial: Path) -> FetchedImage:
        with self._lock:
            self.calls.append(image_id)
        path, disk_format = self.images[image_id]
        time.sleep(self.delay)
        shutil.copyfile(path, dest_partial)
        if image_id in self.lies:
            return self.lies[image_id]
        data = path.read_bytes()
        return FetchedImage(
            disk_format=disk_format,
            size=len(data),
            checksum=hashlib.md5(data).hexdigest(),
            os_hash_value=hashlib.sha512(data).hexdigest(),
        )


@pytest.fixture
def fetcher() -> FakeFetcher:
    return FakeFetcher()


def cache_of(tmp_path: Path, fetcher: FakeFetcher, **options: object) -> ImageCache:
    settings = ComputeSettings(**options)  # type: ignore[arg-type]
    return ImageCache(tmp_path / "instances" / "_base", fetcher, settings)


def test_base_file_is_named_by_sha1_of_the_image_id(tmp_path: Path, fetcher: FakeFetcher) -> None:
    fetcher.add("img-1", make_image(tmp_path / "src.raw", "raw"), "raw")
    cache = cache_of(tmp_path, fetcher)
    base = cache.ensure_base("img-1")
    assert base.path == tmp_path / "instances/_base" / hashlib.sha1(b"img-1").hexdigest()
    assert base.path.read_bytes() == (tmp_path / "src.raw").read_bytes()
    assert base.format == "raw" and base.virtual_size == 8 * MiB
    assert not list(base.path.parent.glob("*.part"))
    assert cache.read_meta(base.path.name)["image_id"] == "img-1"


def test_qcow2_becomes_raw_with_force_raw_images(tmp_path: Path, fetcher: FakeFetcher) -> None:
    fetcher.add("q", make_image(tmp_path / "src.qcow2", "qcow2"), "qcow2")
    base = cache_of(tmp_path, fetcher).ensure_base("q")
    assert base.format == "raw"
    assert base.path.stat().st_size == 8 * MiB  # a raw file of the virtual size


def test_qcow2_stays_qcow2_without_force_raw(tmp_path: Path, fetcher: FakeFetcher) -> None:
    fetcher.add("q", make_image(tmp_path / "src.qcow2", "qcow2"), "qcow2")
    base = cache_of(tmp_path, fetcher, force_raw_images=False).ensure_base("q")
    assert base.format == "qcow2"
    assert base.path.read_bytes()[:4] == b"QFI\xfb"


def test_checksum_mismatch_is_refused_and_leaves_nothing(
    tmp_path: Path, fetcher: FakeFetcher
) -> None:
    fetcher.add("bad", make_image(tmp_path / "src.raw", "raw"), "raw")
    fetcher.lies["bad"] = FetchedImage("raw", 8 * MiB, "0" * 32, None)
    cache = cache_of(tmp_path, fetcher)
    with pytest.raises(BadRequest, match="md5"):
        cache.ensure_base("bad")
    assert [p.name for p in cache.base_dir.iterdir() if p.is_file()] == []


def test_os_hash_mismatch_is_refused(tmp_path: Path, fetcher: FakeFetcher) -> None:
    src = make_image(tmp_path / "src.raw", "raw")
    fetcher.add("bad", src, "raw")
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    fetcher.lies["bad"] = FetchedImage("raw", 8 * MiB, md5, "f" * 128)
    with pytest.raises(BadRequest, match="os_hash_value"):
        cache_of(tmp_path, fetcher).ensure_base("bad")


def test_qcow2_disguised_as_raw_is_refused(tmp_path: Path, fetcher: FakeFetcher) -> None:
    fetcher.add("sneaky", make_image(tmp_path / "src.qcow2", "qcow2"), "raw")
    with pytest.raises(BadRequest, match="disk_format is raw but the data is qcow2"):
        cache_of(tmp_path, fetcher).ensure_base("sneaky")


def test_qcow2_with_backing_file_is_refused(tmp_path: Path, fetcher: FakeFetcher) -> None:
    secret = make_image(tmp_path / "host-secret.raw", "raw")
    overlay = tmp_path / "evil.qcow2"
    qemuimg.create_overlay(secret, "raw", overlay)
    fetcher.add("evil", overlay, "qcow2")
    cache = cache_of(tmp_path, fetcher)
    with pytest.raises(BadRequest):
        cache.ensure_base("evil")
    assert not cache.base_path("evil").exists()


def test_concurrent_boots_fetch_the_image_once(tmp_path: Path) -> None:
    fetcher = FakeFetcher(delay=0.3)
    fetcher.add("shared", make_image(tmp_path / "src.raw", "raw"), "raw")
    cache = cache_of(tmp_path, fetcher)
    errors: list[BaseException] = []

    def boot(n: int) -> None:
        try:
            cache.create_disk("shared", tmp_path / f"disk{n}", 1)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=boot, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert fetcher.calls == ["shared"]
    assert all((tmp_path / f"disk{n}").exists() for n in range(4))


def test_overlay_on_the_base_grown_to_root_gb(tmp_path: Path, fetcher: FakeFetcher) -> None:
    fetcher.add("img", make_image(tmp_path / "src.raw", "raw"), "raw")
    cache = cache_of(tmp_path, fetcher)
    disk = cache.create_disk("img", tmp_path / "disk", 2)
    info = qemuimg.info(disk.path, "qcow2")
    assert disk.format == "qcow2"
    assert info.virtual_size == 2 * GiB
    assert Path(info.backing_file or "") == cache.base_path("img")


def test_root_gb_zero_means_the_image_size(tmp_path: Path, fetcher: FakeFetcher) -> None:
    fetcher.add("img", make_image(tmp_path / "src.raw", "raw"), "raw")
    disk = cache_of(tmp_path, fetcher).create_disk("img", tmp_path / "disk", 0)
    assert qemuimg.info(disk.path, "qcow2").virtual_size == 8 * MiB


def test_disk_smaller_than_the_image_is_refused(tmp_path: Path, fetcher: FakeFetcher) -> None:
    fetcher.add("big", make_image(tmp_path / "src.qcow2", "qcow2", size=2 * GiB), "qcow2")
    with pytest.raises(BadRequest, match="Flavor's disk is too small"):
        cache_of(tmp_path, fetcher).create_disk("big", tmp_path / "disk", 1)
    assert not (tmp_path / "disk").exists()


def test_full_copy_from_a_resized_base_without_cow(tmp_path: Path, fetcher: FakeFetcher) -> None:
    fetcher.add("img", make_image(tmp_path / "src.raw", "raw"), "raw")
    cache = cache_of(tmp_path, fetcher, use_cow_images=False, preallocate_images="space")
    disk = cache.create_disk("img", tmp_path / "disk", 1)
    resized = cache.base_dir / f"{fingerprint('img')}_1"
    assert disk.format == "raw" and disk.base == resized
    assert resized.stat().st_size == GiB
    assert qemuimg.info(disk.path, "raw").backing_file is None
    assert disk.path.stat().st_size == GiB
    assert disk.path.stat().st_blocks * 512 >= GiB  # preallocate_images = space


def test_a_used_base_is_touched(tmp_path: Path, fetcher: FakeFetcher) -> None:
    fetcher.add("img", make_image(tmp_path / "src.raw", "raw"), "raw")
    now = [1_000_000.0]
    cache = ImageCache(tmp_path / "_base", fetcher, ComputeSettings(), clock=lambda: now[0])
    base = cache.ensure_base("img")
    assert base.path.stat().st_mtime == 1_000_000.0
    now[0] += 500
    cache.create_disk("img", tmp_path / "disk", 1)
    assert base.path.stat().st_mtime == 1_000_500.0
    assert fetcher.calls == ["img"]


def make_iso(path: Path) -> Path:
    """A small real ISO 9660 image (pycdlib, as the config drive)."""
    import io

    import pycdlib

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, vol_ident="INSTALL")
    data = b"installer payload\n"
    iso.add_fp(io.BytesIO(data), len(data), "/PAYLOAD.;1")
    iso.write(str(path))
    iso.close()
    return path


@pytest.mark.parametrize("force_raw", [True, False])
def test_an_iso_boots_as_a_cd_next_to_a_blank_disk(tmp_path: Path, fetcher: FakeFetcher,
                                                   force_raw: bool) -> None:
    fetcher.add("iso", make_iso(tmp_path / "inst.iso"), "iso")
    cache = cache_of(tmp_path, fetcher, force_raw_images=force_raw)
    made = cache.create_disk("iso", tmp_path / "disk", 1)
    assert made.cdrom == cache.base_path("iso")
    assert made.cdrom.read_bytes() == (tmp_path / "inst.iso").read_bytes()  # never converted
    assert cache.read_meta(made.cdrom.name)["disk_format"] == "iso"
    disk = qemuimg.info(tmp_path / "disk", "qcow2")
    assert disk.virtual_size == GiB and disk.backing_file is None  # blank, flavor-sized


def test_an_iso_needs_a_flavor_with_a_disk(tmp_path: Path, fetcher: FakeFetcher) -> None:
    fetcher.add("iso", make_iso(tmp_path / "inst.iso"), "iso")
    with pytest.raises(BadRequest, match="flavor with a root disk"):
        cache_of(tmp_path, fetcher).create_disk("iso", tmp_path / "disk", 0)
    assert not (tmp_path / "disk").exists()
