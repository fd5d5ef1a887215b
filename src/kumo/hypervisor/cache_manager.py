"""nova's image cache manager pass over `_base`: what is in use, what may go.

A base file is *in use* when an instance disk under `instances/` has it as backing
file, or an instance on this host was made from its image (nova matches image_ref
fingerprints too). Unused files go once older than
`remove_unused_original_minimum_age_seconds` (`<fp>`) or
`remove_unused_resized_minimum_age_seconds` (`<fp>_<GB>`), counted from their mtime,
which every use touches. Removal happens under the base file's lock, so a server
being created from it at that moment keeps it.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path

from kumo.config import ImageCacheSettings
from kumo.diskformat import qemuimg
from kumo.errors import KumoError
from kumo.hypervisor.imagecache import ImageCache, fingerprint

log = logging.getLogger("kumo.hypervisor.cache_manager")

BASE_NAME = re.compile(r"^[0-9a-f]{40}(_[0-9]+)?$")
INSTANCE_RECORD = "instance.json"


@dataclass(frozen=True)
class BaseFileReport:
    name: str
    path: Path
    image_id: str | None
    size: int
    age_seconds: float
    resized: bool
    used_by: tuple[str, ...]
    verdict: str  # "in use" | "removable" | "too young" | "unknown"


@dataclass(frozen=True)
class InstanceUse:
    server_id: str
    image_id: str | None
    backing_file: Path | None


def instance_uses(instances_path: Path, base_dir: Path) -> list[InstanceUse]:
    """Every instance folder's image and the backing file of its root disk."""
    uses: list[InstanceUse] = []
    if not instances_path.is_dir():
        return uses
    for folder in sorted(instances_path.iterdir()):
        if not folder.is_dir() or folder.resolve() == base_dir.resolve():
            continue
        image_id: str | None = None
        disk_format = "qcow2"
        try:
            record = json.loads((folder / INSTANCE_RECORD).read_text())
            image_id = record.get("image_id")
            disk_format = record.get("disk_format", "qcow2")
        except (OSError, ValueError):
            pass
        backing: Path | None = None
        disk = folder / "disk"
        if disk.exists() and disk_format == "qcow2":
            try:
                found = qemuimg.info(disk, "qcow2").backing_file
            except KumoError as exc:
                log.warning("cannot read %s: %s", disk, exc)
            else:
                if found:
                    backing = (folder / found).resolve()
        uses.append(InstanceUse(folder.name, image_id, backing))
    return uses


def scan(cache: ImageCache, instances_path: Path, settings: ImageCacheSettings) -> list[
    BaseFileReport
]:
    """Every file in `_base` with who uses it and what a pass would do with it."""
    base_dir = cache.base_dir
    if not base_dir.is_dir():
        return []
    uses = instance_uses(instances_path, base_dir)
    now = cache.clock()
    reports: list[BaseFileReport] = []
    for path in sorted(p for p in base_dir.iterdir() if p.is_file()):
        stat = path.stat()
        age = now - stat.st_mtime
        if not BASE_NAME.match(path.name):
            reports.append(BaseFileReport(path.name, path, None, stat.st_size, age, False, (),
                                          "unknown"))
            continue
        meta = cache.read_meta(path.name)
        image_id = meta.get("image_id")
        resized = "_" in path.name
        users = tuple(
            use.server_id for use in uses
            if use.backing_file == path.resolve()
            or (use.image_id is not None and fingerprint(use.image_id) == path.name)
        )
        threshold = (
            settings.remove_unused_resized_minimum_age_seconds
            if resized else settings.remove_unused_original_minimum_age_seconds
        )
        if users:
            verdict = "in use"
        elif age >= threshold:
            verdict = "removable"
        else:
            verdict = "too young"
        reports.append(BaseFileReport(path.name, path, image_id, stat.st_size, age, resized,
                                      users, verdict))
    return reports


def run_pass(
    cache: ImageCache, instances_path: Path, settings: ImageCacheSettings, *, dry_run: bool = False
) -> list[BaseFileReport]:
    """One manager pass, with nova's log lines; removes what is removable unless dry_run.

    Returns the reports as seen before removal (verdict "removable" = removed, unless
    dry_run or `remove_unused_base_images = False`).
    """
    reports = scan(cache, instances_path, settings)
    for report in reports:
        if report.verdict == "in use":
            log.info("image %(id)s at (%(base_file)s): checking",
                     {"id": report.image_id or "?", "base_file": report.path})
    log.info("Active base files: %s",
             " ".join(str(r.path) for r in reports if r.verdict == "in use"))
    for report in reports:
        if report.verdict != "in use" and (report.image_id is None or report.verdict == "unknown"):
            log.info("Unknown base file: %s", report.path)
    removable = [r for r in reports if r.verdict == "removable"]
    log.info("Removable base files: %s", " ".join(str(r.path) for r in removable))
    for report in reports:
        if report.verdict == "too young":
            log.info("Base or swap file too young to remove: %s", report.path)
    if not settings.remove_unused_base_images or dry_run:
        return reports
    for report in removable:
        with cache.locked(report.name):
            # Look again under the lock: a server may have started using it meanwhile.
            again = {r.name: r for r in scan(cache, instances_path, settings)}
            current = again.get(report.name)
            if current is None or current.verdict != "removable":
                continue
            log.info("Removing base or swap file: %s", report.path)
            try:
                report.path.unlink()
            except OSError as exc:
                log.error("Failed to remove %s, error was %s", report.path, exc)
                continue
            if not report.resized and not any(
                r.name.startswith(report.name + "_") for r in again.values()
            ):
                cache.meta_path(report.name).unlink(missing_ok=True)
    return reports
