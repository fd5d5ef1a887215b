"""After a crash mid-upload: no partial file, no image stuck in saving, no orphans."""

from __future__ import annotations

from sqlalchemy import update

from kumo.db.engine import session_scope
from kumo.image.models import Image
from kumo.image.recovery import recover
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
