"""The qcow2 file driver: what it writes, what it refuses, what a crash leaves."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from kumo.config import Settings
from kumo.diskformat import qemuimg
from kumo.errors import BadRequest, InsufficientStorage, ToolError
from kumo.volume.qcow2 import Qcow2Driver
from tests.volume.conftest import qemu_img

GIB = 1024**3


@pytest.fixture
def driver(tmp_path: Path) -> Qcow2Driver:
    return Qcow2Driver(Settings(data_dir=tmp_path / "data"))


def info(path: Path, fmt: str = "qcow2") -> dict[str, object]:
    return dict(json.loads(qemu_img("info", "-f", fmt, "--output=json", "-U", path)))


def test_from_a_raw_image_converts_and_grows(driver: Qcow2Driver, tmp_path: Path) -> None:
    raw = tmp_path / "disk.raw"
    raw.write_bytes(b"kumo" * 1024 + bytes(1024 * 1024 - 4096))
    location = driver.create_from_image("v1", raw, "raw", 2 * GIB)
    found = info(driver.folder / location)
    assert found["format"] == "qcow2" and found["virtual-size"] == 2 * GIB
    out = tmp_path / "back.raw"
    driver.export(location, out, "raw")
    assert out.read_bytes()[:4096] == b"kumo" * 1024


def test_images_that_point_elsewhere_are_refused(driver: Qcow2Driver, tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", base, "64M")
    sneaky = tmp_path / "sneaky.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", "-b", base, "-F", "qcow2", sneaky)
    with pytest.raises(BadRequest, match="backing file"):
        driver.create_from_image("v1", sneaky, "qcow2", GIB)
    # Claimed raw, really qcow2: the format is pinned, so qemu-img reads it as raw bytes.
    location = driver.create_from_image("v2", sneaky, "raw", GIB)
    assert "backing-filename" not in info(driver.folder / location)
    assert not list(driver.folder.glob("*.part"))


def test_too_small_a_volume_for_the_image(driver: Qcow2Driver, tmp_path: Path) -> None:
    image = tmp_path / "big.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", image, "2G")
    with pytest.raises(BadRequest, match="doesn't fit in a volume of size 1GB"):
        driver.create_from_image("v1", image, "qcow2", GIB)


def test_snapshot_is_standalone_and_volumes_from_it_are_overlays(driver: Qcow2Driver) -> None:
    volume = driver.create_blank("v1", GIB)
    snap = driver.create_snapshot("s1", volume)
    assert "backing-filename" not in info(driver.folder / snap)
    child = driver.create_from_snapshot("v2", snap, 2 * GIB)
    found = info(driver.folder / child)
    assert found["backing-filename"] == "snapshot-s1" and found["virtual-size"] == 2 * GIB
    assert driver.snapshot_has_dependents()
    # A clone of the overlay flattens it: it needs nothing else.
    clone = driver.clone("v3", child, 2 * GIB)
    assert "backing-filename" not in info(driver.folder / clone)
    driver.extend(clone, 3 * GIB)
    assert driver.virtual_size(clone) == 3 * GIB
    disk = driver.disk("v3", clone, read_only=True)
    assert disk.source == {"driver": "file", "filename": str(driver.folder / clone)}
    assert (disk.format, disk.read_only) == ("qcow2", True)


def test_a_failed_write_leaves_nothing_and_sweep_cleans_a_crash(
        driver: Qcow2Driver, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    broken = tmp_path / "broken.qcow2"
    broken.write_bytes(b"QFI\xfb" + bytes(100))
    with pytest.raises(ToolError):
        driver.create_from_image("v1", broken, "qcow2", GIB)
    assert not driver.folder.exists() or list(driver.folder.iterdir()) == []
    raw = tmp_path / "small.raw"
    raw.write_bytes(bytes(4096))

    def dies_halfway(source: Path, fmt: str, dest: Path, dest_fmt: str, **_: object) -> None:
        dest.write_bytes(b"QFI\xfb half a volume")
        raise ToolError("qemu-img", "exited with status 1: No space left on device")

    monkeypatch.setattr(qemuimg, "convert", dies_halfway)
    with pytest.raises(InsufficientStorage, match="disk full"):
        driver.create_from_image("v2", raw, "raw", GIB)
    assert list(driver.folder.iterdir()) == []
    # A crash in the middle of a write leaves only a .part, which start-up removes.
    driver.folder.mkdir(parents=True, exist_ok=True)
    (driver.folder / "volume-v9.part").write_bytes(b"half")
    assert driver.sweep() == [str(driver.folder / "volume-v9.part")]
    assert list(driver.folder.iterdir()) == []


def test_locations_stay_inside_the_folder(driver: Qcow2Driver) -> None:
    for bad in ("../etc/passwd", "/etc/passwd", ".hidden", ""):
        with pytest.raises(BadRequest):
            driver.delete(bad)
    assert os.path.exists("/etc/passwd")
