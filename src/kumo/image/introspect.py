"""After an upload: read os_distro, os_version and os_admin_user from inside the image.

Whatever client uploaded it (`openstack`, `glance`, the SDK, the dashboard, `kumo image
create`), an image whose uploader did not give these properties gets them from its own
root filesystem (`/etc/os-release`, cloud-init's default user, kumo's
`/etc/kumo/image-properties`), so `kumo server ssh` logs in as the right user. The
reading runs on one background thread after the upload has answered; a property the
owner set in the meantime is never overwritten.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from kumo.db.engine import session_scope
from kumo.image.lifecycle import ACTIVE
from kumo.image.models import Image, ImageProperty
from kumo.runtime import Runtime

log = logging.getLogger(__name__)

READ_PROPERTIES = ("os_distro", "os_version", "os_admin_user")
READABLE_FORMATS = ("raw", "qcow2")

_pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="image-introspect")
_pending: set[Future[None]] = set()
_lock = threading.Lock()


def submit(runtime: Runtime, image_id: str) -> None:
    """Read the new image's properties in the background."""
    future = _pool.submit(read_into_image, runtime, image_id)
    with _lock:
        _pending.add(future)
    future.add_done_callback(_forget)


def _forget(future: Future[None]) -> None:
    with _lock:
        _pending.discard(future)


def wait_idle(timeout: float = 60) -> None:
    """Wait until every submitted reading is done (tests, shutdown)."""
    with _lock:
        pending = list(_pending)
    for future in pending:
        future.result(timeout=timeout)


def read_into_image(runtime: Runtime, image_id: str) -> None:
    """Set the missing os_* properties of `image_id` from its contents (never raises)."""
    try:
        _read_into_image(runtime, image_id)
    except Exception:  # a bad image must not take the worker down; the upload stands
        log.exception("could not read properties from inside image %s", image_id)


def _read_into_image(runtime: Runtime, image_id: str) -> None:
    from kumo.imagebuild.properties import detect_properties

    with session_scope(runtime.sessions) as session:
        image = session.get(Image, image_id)
        if image is None or image.status != ACTIVE or image.location is None:
            return
        if image.disk_format not in READABLE_FORMATS:
            return
        given = {p.name for p in image.properties}
        if not set(READ_PROPERTIES) - given:
            return
        location, disk_format = image.location, image.disk_format
    # A file store hands out its file; a remote one (Swift, S3) a scratch copy.
    with runtime.store.local_file(location, runtime.settings.run_dir / "image-reads") as path:
        found = detect_properties(path, disk_format)
    wanted = {k: v for k, v in found.items() if k in READ_PROPERTIES and v}
    if not wanted:
        return
    with session_scope(runtime.sessions) as session:
        image = session.get(Image, image_id)
        if image is None:
            return
        present = {p.name for p in image.properties}
        added = {k: v for k, v in wanted.items() if k not in present}
        for name, value in added.items():
            image.properties.append(ImageProperty(name=name, value=value))
    if added:
        log.info("image %s: read %s from inside it", image_id,
                 ", ".join(f"{k}={v}" for k, v in sorted(added.items())))
