"""Start-up sweep after a crash: no half-stored data, no image stuck in `saving`.

A `kill -9` mid-upload leaves a `.partial` file and an image in `saving`; a crash
between deleting an image's record and its file leaves an orphan file. `kumo up` and
`kumo api` call `recover()` before they serve anything. Several API processes may share
the database and the store: an upload holds the lock `upload_lock(image_id)` from
claiming the image to storing its record, so a process that starts never mistakes
another's upload under way for a crashed one.
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from kumo.db.base import utcnow
from kumo.db.engine import session_scope
from kumo.db.locks import is_held
from kumo.image.lifecycle import QUEUED, SAVING
from kumo.image.models import Image
from kumo.runtime import Runtime

log = logging.getLogger(__name__)


def upload_lock(image_id: str) -> str:
    """The name of the lock an upload of `image_id` holds (kumo.db.locks)."""
    return f"image-upload:{image_id}"


def recover(runtime: Runtime) -> None:
    """Remove partial and orphan data; put images left in `saving` by a crash back to `queued`."""

    def busy(image_id: str) -> bool:
        return is_held(runtime.engine, upload_lock(image_id))

    for leftover in runtime.store.sweep_partial(busy):
        log.warning("removed the partial data of an interrupted upload: %s", leftover)
    with session_scope(runtime.sessions) as session:
        saving = session.scalars(select(Image.id).where(Image.status == SAVING)).all()
        crashed = [image_id for image_id in saving if not busy(image_id)]
        if crashed:
            session.execute(update(Image).where(Image.id.in_(crashed), Image.status == SAVING)
                            .values(status=QUEUED, updated_at=utcnow()))
            log.warning("%d image(s) left in saving by a crash are queued again", len(crashed))
        known = set(session.scalars(select(Image.location).where(Image.location.is_not(None))))
    for location in runtime.store.locations():
        if location not in known and not busy(runtime.store.image_id_of(location)):
            runtime.store.delete(location)
            log.warning("removed image data no image refers to: %s", location)
