"""Start-up sweep after a crash: no half-stored data, no image stuck in `saving`.

A `kill -9` mid-upload leaves a `.partial` file and an image in `saving`; a crash
between deleting an image's record and its file leaves an orphan file. `kumo up`
calls `recover()` before it serves anything (one API process owns the store).
"""

from __future__ import annotations

import logging

from sqlalchemy import select, update

from kumo.db.base import utcnow
from kumo.db.engine import session_scope
from kumo.image.lifecycle import QUEUED, SAVING
from kumo.image.models import Image
from kumo.runtime import Runtime

log = logging.getLogger(__name__)


def recover(runtime: Runtime) -> None:
    """Remove partial and orphan data files; put images left in `saving` back to `queued`."""
    for leftover in runtime.store.sweep_partial():
        log.warning("removed the partial data of an interrupted upload: %s", leftover)
    with session_scope(runtime.sessions) as session:
        reset = session.execute(
            update(Image).where(Image.status == SAVING).values(status=QUEUED, updated_at=utcnow())
        )
        if reset.rowcount:  # type: ignore[attr-defined]
            log.warning("%d image(s) left in saving by a crash are queued again", reset.rowcount)  # type: ignore[attr-defined]
        known = set(session.scalars(select(Image.location).where(Image.location.is_not(None))))
    for location in runtime.store.locations():
        if location not in known:
            runtime.store.delete(location)
            log.warning("removed image data no image refers to: %s", location)
