"""The image cache manager pass: age thresholds (injected clock), in-use never removed."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from kumo.config import ComputeSettings, ImageCacheSettings
from kumo.hypervisor.cache_manager import INSTANCE_RECORD, run_pass, scan
from kumo.hypervisor.imagecache import ImageCache, fingerprint
from tests.hypervisor.test_imagecache import FakeFetcher, make_image

DAY = 86400


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(tmp_path: Path, clock: Clock) -> ImageCache:
    fetcher = FakeFetcher()
    for name in ("a", "b"):
        fetcher.add(name, make_image(tmp_path / f"{name}.raw", "raw"), "raw")
    return ImageCache(tmp_path / "instances" / "_base", fetcher, ComputeSettings(), clock=clock)


def make_server(cache: ImageCache, server_id: str, image_id: str, root_gb: int = 1) -> Path:
    folder = cache.base_dir.parent / server_id
    folder.mkdir(parents=True)
    made = cache.create_disk(image_id, folder / "disk", root_gb)
    (folder / INSTANCE_RECORD).write_text(
        json.dumps({"image_id": image_id, "disk_format": made.format})
    )
    return folder


def verdicts(cache: ImageCache, settings: ImageCacheSettings) -> dict[str, str]:
    return {r.name: r.verdict for r in scan(cache, cache.base_dir.parent, settings)}


def test_unused_base_removed_only_after_its_age(cache: ImageCache, clock: Clock) -> None:
    settings = ImageCacheSettings()
    base = cache.ensure_base("a").path
    clock.now += DAY - 10
    run_pass(cache, cache.base_dir.parent, settings)
    assert base.exists()
    assert verdicts(cache, settings)[base.name] == "too young"
    clock.now += 20
    assert verdicts(cache, settings)[base.name] == "removable"
    run_pass(cache, cache.base_dir.parent, settings)
    assert not base.exists()


def test_a_base_in_use_is_never_removed(cache: ImageCache, clock: Clock) -> None:
    settings = ImageCacheSettings(remove_unused_original_minimum_age_seconds=0)
    server = make_server(cache, "srv-1", "a")
    unused = cache.ensure_base("b").path
    # Even if the server's record is lost, the disk's backing file keeps the base.
    (server / INSTANCE_RECORD).unlink()
    clock.now += 365 * DAY
    reports = {r.name: r for r in run_pass(cache, cache.base_dir.parent, settings)}
    used = cache.base_path("a")
    assert used.exists() and reports[used.name].verdict == "in use"
    assert reports[used.name].used_by == ("srv-1",)
    assert not unused.exists()


def test_resized_variant_has_its_own_threshold(tmp_path: Path, clock: Clock) -> None:
    fetcher = FakeFetcher()
    fetcher.add("a", make_image(tmp_path / "a.raw", "raw"), "raw")
    cache = ImageCache(tmp_path / "instances" / "_base", fetcher,
                       ComputeSettings(use_cow_images=False), clock=clock)
    server = make_server(cache, "srv-1", "a", root_gb=1)
    import shutil
    shutil.rmtree(server)  # the server is deleted; both base files are now unused
    resized = cache.base_dir / f"{fingerprint('a')}_1"
    original = cache.base_path("a")
    assert resized.exists()
    clock.now += 3600 + 1
    settings = ImageCacheSettings()
    assert verdicts(cache, settings) == {original.name: "too young", resized.name: "removable"}
    run_pass(cache, cache.base_dir.parent, settings)
    assert original.exists() and not resized.exists()


def test_dry_run_and_disabled_removal_keep_files(cache: ImageCache, clock: Clock) -> None:
    base = cache.ensure_base("a").path
    clock.now += 2 * DAY
    run_pass(cache, cache.base_dir.parent, ImageCacheSettings(), dry_run=True)
    assert base.exists()
    run_pass(cache, cache.base_dir.parent,
             ImageCacheSettings(remove_unused_base_images=False))
    assert base.exists()


def test_nova_log_lines(
    cache: ImageCache, clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    make_server(cache, "srv-1", "a")
    old = cache.ensure_base("b").path
    (cache.base_dir / "stray-file").write_text("?")
    clock.now += 2 * DAY
    young = cache.base_dir / ("0" * 40)
    young.write_text("x")
    import os
    os.utime(young, (clock.now, clock.now))
    caplog.set_level(logging.INFO, logger="kumo.hypervisor.cache_manager")
    run_pass(cache, cache.base_dir.parent, ImageCacheSettings())
    text = caplog.text
    used = cache.base_path("a")
    assert f"image a at ({used}): checking" in text
    assert f"Active base files: {used}" in text
    assert f"Removable base files: {old}" in text
    assert f"Removing base or swap file: {old}" in text
    assert f"Base or swap file too young to remove: {young}" in text
    assert f"Unknown base file: {young}" in text  # no image known for it
    assert f"Unknown base file: {cache.base_dir / 'stray-file'}" in text
    assert (cache.base_dir / "stray-file").exists() and young.exists() and not old.exists()
