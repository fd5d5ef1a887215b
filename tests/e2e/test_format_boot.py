"""Every disk format kumo accepts boots: the tiny image in each, uploaded, then booted.

Each format's copy goes through the real upload checks (inspector, qemu-img info and
check) into a real image service, then the hypervisor fetches it. With
`force_raw_images = False` QEMU reads the format itself at boot (the overlay's
backing file is the vhd, vhdx, ... file); with the default, the cache converts it to
raw (checked here without a boot). The guests boot together to save time under
TCG, until the tiny image says its root filesystem from the disk is mounted.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from kumo.config import Settings
from kumo.diskformat import qemuimg
from kumo.hypervisor.driver import GuestSpec
from kumo.hypervisor.fetcher import LocalImageFetcher
from kumo.hypervisor.imagecache import fingerprint
from kumo.hypervisor.local import LocalHypervisor
from kumo.image import service
from kumo.runtime import Runtime
from tests.diskformat.formats import converted

pytestmark = [pytest.mark.e2e]

# qcow2 and raw boot in every other guest test; these take other QEMU drivers.
FORMATS = ("vhd", "vhdx", "vmdk", "vdi", "ploop", "ami")
BOOT_TIMEOUT = 300.0


@pytest.fixture(scope="module")
def uploaded(tiny_image: Path, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[Runtime, dict[str, str]]]:
    """The tiny image in each format, uploaded through kumo's image service."""
    from kumo.api.context import RequestContext
    from kumo.server import prepare

    base = tmp_path_factory.mktemp("formats")
    settings = Settings(data_dir=base / "data", admin_password="x")
    settings.identity.password_hash_rounds = 4
    runtime, _ = prepare(settings)
    from sqlalchemy import select

    from kumo.db.engine import session_scope
    from kumo.identity.models import Project, User

    with session_scope(runtime.sessions) as session:
        admin = session.scalar(select(User).where(User.name == "admin"))
        project = session.scalar(select(Project).where(Project.name == "admin"))
        assert admin is not None and project is not None
        context = RequestContext(admin.id, "admin", project.id, "admin", ("admin", "member"),
                                 "", datetime.now(UTC) + timedelta(hours=1))
    images = {}
    for disk_format in FORMATS:
        path = converted(tiny_image, base, disk_format)
        images[disk_format] = service.create_image_from_file(
            runtime, context, f"tiny-{disk_format}", path, disk_format).id
    yield runtime, images
    runtime.engine.dispose()


def _hypervisor(runtime: Runtime, force_raw: bool) -> LocalHypervisor:
    # A short folder: unix socket paths must fit.
    data = Path(os.environ.get("TMPDIR", "/tmp")) / f"kumo-fmt-{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=data)
    settings.compute.force_raw_images = force_raw
    return LocalHypervisor(settings, LocalImageFetcher(runtime))


def test_the_cache_converts_every_format_to_raw(uploaded: tuple[Runtime, dict[str, str]]
                                                ) -> None:
    runtime, images = uploaded
    hv = _hypervisor(runtime, force_raw=True)
    try:
        for disk_format, image_id in images.items():
            base = hv.cache.ensure_base(image_id)
            assert base.format == "raw", disk_format
            assert base.virtual_size >= 64 * 1024 * 1024, disk_format
    finally:
        shutil.rmtree(hv.settings.data_dir, ignore_errors=True)


@pytest.mark.guest
def test_every_format_boots(uploaded: tuple[Runtime, dict[str, str]]) -> None:
    runtime, images = uploaded
    hv = _hypervisor(runtime, force_raw=False)
    specs = {fmt: GuestSpec(server_id=str(uuid.uuid4()), name=f"tiny-{fmt}", image_id=image_id,
                            vcpus=1, memory_mb=192, root_gb=1, forwards=(),
                            metadata_socket=None)
             for fmt, image_id in images.items()}
    try:
        for fmt, spec in specs.items():
            hv.spawn(spec)
            # The guest's disk is an overlay whose backing file QEMU reads in this format.
            base = hv.cache.read_meta(fingerprint(spec.image_id))
            assert base["format"] == qemuimg.driver(fmt), base
        waiting = dict(specs)
        deadline = time.monotonic() + BOOT_TIMEOUT
        while waiting:
            assert time.monotonic() < deadline, {
                f: hv.console_log(s.server_id)[-500:] for f, s in waiting.items()}
            for fmt, spec in list(waiting.items()):
                if "tiny: userland" in hv.console_log(spec.server_id):
                    del waiting[fmt]  # the root filesystem was read from this format
            time.sleep(1)
    finally:
        for spec in specs.values():
            hv.destroy(spec.server_id)
        shutil.rmtree(hv.settings.data_dir, ignore_errors=True)
