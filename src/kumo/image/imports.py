"""Glance's interoperable image import: stage the data, then import it with a task.

`PUT /v2/images/{id}/stage` streams the bytes into the staging area (`DATA/staging`,
Glance's os_glance_staging_store) and leaves the image `uploading`; nothing is judged
yet, as in Glance. `POST /v2/images/{id}/import` starts a task (`api_image_import`)
and answers 202; the task, on a worker thread:

1. takes the data: the staged file (`glance-direct`), or downloads it into staging
   (`web-download`, only from URL prefixes the operator allows);
2. inspects it with the same checks as a direct upload (oslo's format inspector: the
   content must be the claimed `disk_format`, and safe: no backing file, no data-file,
   no VMDK extents elsewhere, no polyglot) and asks `qemu-img info -f <format>` the
   same, all before anything else reads it;
3. converts it with the image conversion plugin (`[image_conversion] output_format`),
   `qemu-img convert -f <disk_format> -O <output_format>`, unless it is already in that
   format or is an ISO;
4. stores it like any upload (inspected again, hashed), and the image becomes `active`
   with the output format, its size and virtual size.

Any failure puts the image back to `queued`, removes the staged data, sets
`os_glance_failed_import`, and says why in the task's `message`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.config import Settings
from kumo.db.base import utcnow
from kumo.db.engine import session_scope
from kumo.diskformat import qemuimg
from kumo.diskformat.inspect import inspect_file_blocks
from kumo.errors import (
    BadRequest,
    Conflict,
    InsufficientStorage,
    KumoError,
    NotFound,
    PayloadTooLarge,
)
from kumo.image import access, introspect, lifecycle
from kumo.image.lifecycle import ACTIVE, IMPORTING, QUEUED, UPLOADING
from kumo.image.models import Image, ImageProperty, ImageTask
from kumo.image.upload import IMAGE_SIZE_CAP, file_blocks, ingest
from kumo.runtime import Runtime
from kumo.store.filesystem import FilesystemStore
from kumo.workers import KeyedWorkers

log = logging.getLogger("kumo.image.import")

GLANCE_DIRECT, WEB_DOWNLOAD = "glance-direct", "web-download"
STORE = "file"  # kumo's one store, as /v2/info/stores names it
TASK_TIME_TO_LIVE = timedelta(hours=48)  # Glance's task_time_to_live
# Formats qemu-img reads and writes that conversion may start from.
CONVERTIBLE = frozenset({"raw", "qcow2", "vmdk", "vdi", "vhd", "vhdx"})
DOWNLOAD_TIMEOUT = 60.0
MAX_REDIRECTS = 5


def import_methods(settings: Settings) -> list[str]:
    """What `/v2/info/import` and the OpenStack-image-import-methods header offer."""
    methods = [GLANCE_DIRECT]
    if settings.image_import.allowed_url_prefixes:
        methods.append(WEB_DOWNLOAD)
    return methods


def staging_store(settings: Settings) -> FilesystemStore:
    return FilesystemStore(settings.staging_dir)


def _load(session: Session, image_id: str) -> Image:
    image = session.get(Image, image_id)
    if image is None or image.status == lifecycle.DELETED:
        raise NotFound(f"No image found with ID {image_id}")
    return image


def _set_properties(image: Image, values: dict[str, str | None]) -> None:
    current = {p.name: p for p in image.properties}
    for name, value in values.items():
        if value is None:
            if name in current:
                image.properties.remove(current[name])
        elif name in current:
            current[name].value = value
        else:
            image.properties.append(ImageProperty(name=name, value=value))


# -- stage ---------------------------------------------------------------------------


def stage(runtime: Runtime, context: RequestContext, image_id: str,
          blocks: Iterable[Any], expected_size: int | None) -> None:
    """PUT .../stage: queued -> uploading with the bytes in staging (or back to queued)."""
    if GLANCE_DIRECT not in import_methods(runtime.settings):
        raise NotFound("'glance-direct' method is not available at this site.")
    with session_scope(runtime.sessions) as session:
        image = _load(session, image_id)
        access.check_modify(context, image)
        if image.status != QUEUED:
            raise Conflict(f"Image status transition from {image.status} to {UPLOADING} is not "
                           "allowed; data can only be staged for a queued image")
        claimed = session.execute(update(Image).where(
            Image.id == image_id, Image.status == QUEUED).values(
            status=UPLOADING, updated_at=utcnow()))
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            raise Conflict(f"Image {image_id} is already receiving data")
        disk_format = image.disk_format or "raw"
    try:
        # Not inspected here, as in Glance: the import inspects before it does anything.
        result = ingest(staging_store(runtime.settings), image_id, blocks,
                        disk_format=disk_format, container_format="bare",
                        expected_size=expected_size, inspect=False)
    except BaseException as exc:
        _unstage(runtime, image_id)
        if isinstance(exc, InsufficientStorage):
            raise PayloadTooLarge(f"Image storage media is full: {exc.message}") from exc
        raise
    with session_scope(runtime.sessions) as session:
        staged = session.get(Image, image_id)
        if staged is None or staged.status != UPLOADING:
            staging_store(runtime.settings).delete(result.location)
            raise Conflict(f"Image {image_id} was deleted or changed while being staged")
        staged.size, staged.updated_at = result.size, utcnow()


def _unstage(runtime: Runtime, image_id: str) -> None:
    staging = staging_store(runtime.settings)
    with contextlib.suppress(KumoError):
        staging.delete(staging.root.joinpath(image_id).as_uri())
    with session_scope(runtime.sessions) as session:
        session.execute(update(Image).where(
            Image.id == image_id, Image.status == UPLOADING).values(
            status=QUEUED, size=None, updated_at=utcnow()))


# -- import (the request) --------------------------------------------------------------


def _method(body: Any, settings: Settings) -> tuple[str, str | None]:
    method = body.get("method") if isinstance(body, dict) else None
    if not isinstance(method, dict):
        raise BadRequest("Import request requires a 'method' field.")
    name = method.get("name")
    if not isinstance(name, str):
        raise BadRequest("Import request requires a 'name' field.")
    if name not in (GLANCE_DIRECT, WEB_DOWNLOAD, "copy-image", "glance-download"):
        raise BadRequest(f"Unknown import method name '{name}'.")
    if name == WEB_DOWNLOAD and name not in import_methods(settings):
        raise BadRequest("Import method 'web-download' is not enabled at this site: the "
                         "operator allows no URL prefixes ([import_filtering_opts] "
                         "allowed_url_prefixes)")
    if name not in import_methods(settings):
        raise BadRequest(f"Import method '{name}' is not supported by kumo; use "
                         f"{' or '.join(import_methods(settings))}")
    for key in ("all_stores", "all_stores_must_succeed"):
        if key in body and not isinstance(body[key], bool):
            raise BadRequest(f"'{key}' must be boolean value only")
    stores = body.get("stores")
    if stores is not None and (not isinstance(stores, list) or set(stores) - {STORE}):
        raise BadRequest(f"Unknown store(s) {stores!r}: kumo has one store, {STORE!r}")
    uri = method.get("uri")
    if name == WEB_DOWNLOAD:
        if not isinstance(uri, str) or not uri:
            raise BadRequest("'uri' is required for the web-download import method")
        check_uri(uri, settings.image_import.allowed_url_prefixes)
    return name, uri if isinstance(uri, str) else None


def check_uri(uri: str, prefixes: list[str]) -> None:
    """web-download fetches only below a prefix the operator allowed (no `..`, no
    credentials in the URL)."""
    parts = urlsplit(uri)
    segments = parts.path.split("/")
    bad = (parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc
           or ".." in segments or "." in segments or "\\" in uri)
    if bad or not any(uri.startswith(prefix) for prefix in prefixes):
        raise BadRequest(f"URI for web-download does not pass filtering: {uri} (allowed: "
                         f"{', '.join(prefixes) or 'none'})")


def begin_import(session: Session, context: RequestContext, settings: Settings,
                 image_id: str, body: Any, request_id: str | None) -> ImageTask:
    """POST .../import: Glance's checks, then a pending task holding the image's lock."""
    name, _ = _method(body, settings)
    image = _load(session, image_id)
    access.check_modify(context, image)
    if image.status == ACTIVE:
        raise Conflict("Image with status active cannot be target for import")
    if image.status != QUEUED and name == WEB_DOWNLOAD:
        raise Conflict(f"Image needs to be in 'queued' state to use '{name}' method")
    if image.status != UPLOADING and name == GLANCE_DIRECT:
        raise Conflict("Image needs to be staged before 'glance-direct' method can be used")
    if not image.container_format:
        raise Conflict("'container_format' needs to be set before import")
    if not image.disk_format:
        raise Conflict("'disk_format' needs to be set before import")
    running = image.property_dict().get("os_glance_import_task")
    if running:
        task = session.get(ImageTask, running)
        if task is not None and task.status in ("pending", "processing"):
            raise Conflict(f"New operation on image '{image_id}' is not permitted as prior "
                           "operation is still in progress")
    task = ImageTask(type="api_image_import", status="pending", owner=image.owner or "",
                     input={"image_id": image_id, "import_req": body, "backend": [STORE]},
                     image_id=image_id, request_id=request_id, user_id=context.user_id)
    session.add(task)
    session.flush()
    lifecycle.check_transition(image.status, IMPORTING)
    image.status, image.updated_at = IMPORTING, utcnow()
    _set_properties(image, {"os_glance_import_task": task.id,
                            "os_glance_importing_to_stores": STORE,
                            "os_glance_failed_import": ""})
    return task


# -- import (the task) --------------------------------------------------------------------


class ImageImporter:
    """Runs import tasks on a small pool; registered as runtime.services["image_import"]."""

    def __init__(self, runtime: Runtime, workers: int = 2) -> None:
        self.runtime = runtime
        self.jobs = KeyedWorkers("import", workers)

    async def start(self) -> None:
        await asyncio.to_thread(self.recover)

    async def stop(self) -> None:
        await asyncio.to_thread(self.jobs.shutdown)

    def submit(self, task_id: str) -> None:
        self.jobs.submit(task_id, self.run)

    def wait_idle(self, timeout: float = 120) -> None:
        """Block until every submitted task has finished (tests)."""
        self.jobs.wait_idle(timeout)

    def run(self, task_id: str) -> None:
        """One import, start to end (the image ends active or queued)."""
        settings = self.runtime.settings
        with session_scope(self.runtime.sessions) as session:
            task = session.get(ImageTask, task_id)
            if task is None or task.status != "pending":
                return
            task.status, task.updated_at = "processing", utcnow()
            image_id = str(task.image_id)
            request: dict[str, Any] = dict(task.input).get("import_req") or {}  # type: ignore[assignment]
            image = _load(session, image_id)
            disk_format, container = str(image.disk_format), str(image.container_format)
        staged = settings.staging_dir / image_id
        converted = settings.staging_dir / f".{image_id}.converted"
        try:
            method = request.get("method", {})
            if method.get("name") == WEB_DOWNLOAD:
                self._download(str(method.get("uri")), image_id)
            if not staged.exists():
                raise KumoError("the staged data is gone (was kumo restarted?); stage it again")
            source, fmt = self._prepare(staged, converted, disk_format, container)
            result = ingest(self.runtime.store, image_id, file_blocks(str(source)),
                            disk_format=fmt, container_format=container)
        except Exception as exc:
            self._failed(task_id, image_id, exc)
            return
        finally:
            staged.unlink(missing_ok=True)
            converted.unlink(missing_ok=True)
        self._succeeded(task_id, image_id, fmt, result)

    def _prepare(self, staged: Path, converted: Path, disk_format: str,
                 container: str) -> tuple[Path, str]:
        """Inspect the staged data as an upload is inspected (the stream inspector, then
        qemu-img info/check under limits), then convert it if asked."""
        if container == "bare":
            verdict = inspect_file_blocks(file_blocks(str(staged)), disk_format)
            log.info("staged %s: %s, virtual size %d", staged.name, verdict.detected,
                     verdict.virtual_size)
            qemuimg.check_upload(staged, disk_format)
        wanted = self.runtime.settings.image_import.output_format
        plugins = self.runtime.settings.image_import.image_import_plugins
        if "image_conversion" not in plugins or container != "bare" or \
                disk_format == wanted or disk_format not in CONVERTIBLE:
            return staged, disk_format
        partial = converted.with_name(converted.name + ".part")
        try:
            qemuimg.convert(staged, qemuimg.driver(disk_format), partial, wanted)
            partial.replace(converted)
        finally:
            partial.unlink(missing_ok=True)
        return converted, wanted

    def _download(self, uri: str, image_id: str) -> None:
        """web-download: the URL's bytes into staging (redirects checked like the URL)."""
        import httpx

        prefixes = self.runtime.settings.image_import.allowed_url_prefixes
        store = staging_store(self.runtime.settings)
        with httpx.Client(timeout=DOWNLOAD_TIMEOUT, follow_redirects=False) as client:
            for _hop in range(MAX_REDIRECTS + 1):
                check_uri(uri, prefixes)
                with client.stream("GET", uri) as response:
                    if response.is_redirect:
                        uri = str(response.url.join(response.headers.get("location", "")))
                        continue
                    if response.status_code != 200:
                        raise KumoError(f"web-download of {uri} failed: HTTP "
                                        f"{response.status_code}")
                    store.put(image_id, _capped(response.iter_bytes(1024 * 1024)))
                    return
        raise KumoError(f"web-download of {uri}: more than {MAX_REDIRECTS} redirects")

    def _succeeded(self, task_id: str, image_id: str, fmt: str, result: Any) -> None:
        with session_scope(self.runtime.sessions) as session:
            image = session.get(Image, image_id)
            task = session.get(ImageTask, task_id)
            gone = image is None or image.status != IMPORTING
            if not gone and image is not None:
                image.disk_format = fmt
                image.size, image.virtual_size = result.size, result.virtual_size
                image.checksum, image.location = result.checksum, result.location
                image.os_hash_algo, image.os_hash_value = result.os_hash_algo, \
                    result.os_hash_value
                image.status, image.updated_at = ACTIVE, utcnow()
                _set_properties(image, {"os_glance_import_task": None,
                                        "os_glance_importing_to_stores": "",
                                        "os_glance_failed_import": ""})
            if task is not None:
                task.status = "failure" if gone else "success"
                task.result = {"image_id": image_id}
                task.message = "the image was deleted during the import" if gone else ""
                task.updated_at = utcnow()
                task.expires_at = task.updated_at + TASK_TIME_TO_LIVE
        if gone:
            self.runtime.store.delete(result.location)
        else:
            log.info("image %s imported as %s (task %s)", image_id, fmt, task_id)
            # os_distro, os_version, os_admin_user from inside it, as after an upload
            introspect.submit(self.runtime, image_id)

    def _failed(self, task_id: str, image_id: str, exc: Exception) -> None:
        message = exc.message if isinstance(exc, KumoError) else \
            f"{type(exc).__name__}: {exc}"
        log.warning("import of image %s failed (task %s): %s", image_id, task_id, message)
        with session_scope(self.runtime.sessions) as session:
            image = session.get(Image, image_id)
            if image is not None and image.status == IMPORTING:
                image.status, image.size, image.updated_at = QUEUED, None, utcnow()
                _set_properties(image, {"os_glance_import_task": None,
                                        "os_glance_importing_to_stores": "",
                                        "os_glance_failed_import": STORE})
            task = session.get(ImageTask, task_id)
            if task is not None:
                task.status, task.message, task.updated_at = "failure", message, utcnow()
                task.expires_at = task.updated_at + TASK_TIME_TO_LIVE

    def recover(self) -> None:
        """After a crash: unfinished tasks fail, their images are queued again; a stage
        that did not finish is dropped."""
        swept = staging_store(self.runtime.settings).sweep_partial()
        for leftover in swept:
            log.warning("removed the partial staged data of an interrupted stage: %s", leftover)
        with session_scope(self.runtime.sessions) as session:
            tasks = list(session.scalars(select(ImageTask).where(
                ImageTask.status.in_(("pending", "processing")))))
            pairs = [(t.id, t.image_id) for t in tasks]
            staged = {p.name for p in self.runtime.settings.staging_dir.glob("*")} \
                if self.runtime.settings.staging_dir.is_dir() else set()
            for image in session.scalars(select(Image).where(Image.status == UPLOADING)):
                if image.id not in staged:  # the stage never finished
                    image.status, image.size = QUEUED, None
        for task_id, image_id in pairs:
            self._failed(task_id, str(image_id),
                         KumoError("kumo stopped during the import; stage and import again"))
            (self.runtime.settings.staging_dir / str(image_id)).unlink(missing_ok=True)


def _capped(chunks: Iterator[bytes]) -> Iterator[bytes]:
    size = 0
    for chunk in chunks:
        size += len(chunk)
        if size > IMAGE_SIZE_CAP:
            raise PayloadTooLarge(f"Image exceeds the storage quota of {IMAGE_SIZE_CAP} bytes")
        yield chunk


def importer_of(runtime: Runtime) -> ImageImporter:
    """The registered importer (made on first use for runtimes `prepare` did not build)."""
    found = runtime.services.get("image_import")
    if isinstance(found, ImageImporter):
        return found
    made = ImageImporter(runtime)
    runtime.services["image_import"] = made
    return made


# -- tasks -------------------------------------------------------------------------------


def task_view(task: ImageTask, *, full: bool = True) -> dict[str, Any]:
    from kumo.image.schemas import timestamp

    body: dict[str, Any] = {"id": task.id, "type": task.type, "status": task.status,
                            "owner": task.owner, "created_at": timestamp(task.created_at),
                            "updated_at": timestamp(task.updated_at),
                            "self": f"/v2/tasks/{task.id}", "schema": "/v2/schemas/task"}
    if task.expires_at is not None:
        body["expires_at"] = timestamp(task.expires_at)
    if full:
        body.update({"input": task.input, "result": task.result, "message": task.message})
        for key in ("image_id", "request_id", "user_id"):
            if getattr(task, key):
                body[key] = getattr(task, key)
    return body


def visible_tasks(session: Session, context: RequestContext,
                  image_id: str | None = None) -> list[ImageTask]:
    stmt = select(ImageTask).order_by(ImageTask.created_at.desc(), ImageTask.id)
    if not context.is_admin:
        stmt = stmt.where(ImageTask.owner == context.project_id)
    if image_id is not None:
        stmt = stmt.where(ImageTask.image_id == image_id)
    return list(session.scalars(stmt))


def get_task(session: Session, context: RequestContext, task_id: str) -> ImageTask:
    task = session.get(ImageTask, task_id)
    if task is None or not (context.is_admin or task.owner == context.project_id):
        raise NotFound(f"Task with the given id {task_id} not found")
    return task
