"""LocalImageFetcher: the image cache filled from this process's image service."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kumo.api.context import RequestContext
from kumo.config import ComputeSettings
from kumo.diskformat import qemuimg
from kumo.errors import NotFound
from kumo.hypervisor.fetcher import LocalImageFetcher
from kumo.hypervisor.imagecache import ImageCache
from kumo.runtime import Runtime


def admin_context() -> RequestContext:
    return RequestContext(
        user_id="u-admin", user_name="admin", project_id="p-admin", project_name="admin",
        roles=("admin", "member", "reader"), token="t",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )


def test_fetch_writes_the_image_and_its_checksums(runtime: Runtime, tmp_path: Path) -> None:
    from kumo.image import service

    source = tmp_path / "src.qcow2"
    qemuimg.create(source, "qcow2", 16 * 1024 * 1024)
    view = service.create_image_from_file(runtime, admin_context(), "disk", source, "qcow2")
    image_id = view["id"] if isinstance(view, dict) else view.id
    dest = tmp_path / "x.part"
    fetched = LocalImageFetcher(runtime).fetch(image_id, dest)
    data = source.read_bytes()
    assert dest.read_bytes() == data
    assert fetched.disk_format == "qcow2" and fetched.size == len(data)
    assert fetched.checksum == hashlib.md5(data).hexdigest()
    assert fetched.os_hash_value == hashlib.sha512(data).hexdigest()
    # The cache accepts it: verified, converted to raw, safety-checked.
    cache = ImageCache(tmp_path / "_base", LocalImageFetcher(runtime), ComputeSettings())
    base = cache.ensure_base(image_id)
    assert base.format == "raw" and base.virtual_size == 16 * 1024 * 1024


def test_unknown_image_is_not_found(runtime: Runtime, tmp_path: Path) -> None:
    with pytest.raises(NotFound):
        LocalImageFetcher(runtime).fetch("00000000-0000-0000-0000-000000000000",
                                         tmp_path / "x.part")
    assert not (tmp_path / "x.part").exists()
