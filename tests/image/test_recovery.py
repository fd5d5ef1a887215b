"""After a crash mid-upload: no partial file, no image stuck in saving, no orphans."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from kumo.db.engine import make_engine, session_scope
from kumo.db.locks import held
from kumo.image.models import Image
from kumo.image.recovery import recover, upload_lock
from kumo.runtime import Runtime


def test_recover_after_a_crash(runtime: Runtime) -> None:
    with session_scope(runtime.sessions) as session:
        image = Image(name="half", disk_format="raw", container_format="bare", status="saving")
        session.add(image)
        session.flush()
        image_id = image.id
    images = runtime.settings.images_dir
    (images / f"{image_id}.partial").write_bytes(b"x" * 1000)  # what kill -9 leaves
    (images / "0rphan").write_bytes(b"y")  # a file whose record was deleted
    recover(runtime)
    assert sorted(p.name for p in images.iterdir()) == []
    with session_scope(runtime.sessions) as session:
        found = session.get(Image, image_id)
        assert found is not None and found.status == "queued"
        session.execute(update(Image).values(status="queued"))


def test_an_upload_under_way_in_another_process_is_left_alone(runtime: Runtime) -> None:
    """Several API processes share PostgreSQL and the store: one that starts must not
    take another's upload in progress for a crash (the uploader holds its lock)."""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("SQLite belongs to one process: no other process can be uploading")
    with session_scope(runtime.sessions) as session:
        live = Image(name="live", disk_format="raw", container_format="bare", status="saving")
        dead = Image(name="dead", disk_format="raw", container_format="bare", status="saving")
        session.add_all([live, dead])
        session.flush()
        live_id, dead_id = live.id, dead.id
    images = runtime.settings.images_dir
    for image_id in (live_id, dead_id):
        (images / f"{image_id}.partial").write_bytes(b"x" * 10)
    other = make_engine(runtime.settings.db_url)  # the uploading process's connection
    try:
        with held(other, upload_lock(live_id)):
            recover(runtime)
            assert sorted(p.name for p in images.iterdir()) == [f"{live_id}.partial"]
            with session_scope(runtime.sessions) as session:
                assert session.get(Image, live_id).status == "saving"  # type: ignore[union-attr]
                assert session.get(Image, dead_id).status == "queued"  # type: ignore[union-attr]
        recover(runtime)  # the uploader is gone now: its leftovers go too
        assert list(images.iterdir()) == []
    finally:
        other.dispose()
