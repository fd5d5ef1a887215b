"""Built images kept by their inputs, under ~/.cache/kumo/images.

An entry is `KIND-KEY.qcow2` plus `KIND-KEY.json` (the inputs, for people), where
KEY is a digest of everything that decides the bytes: package versions, the build
script's version, the files copied into the image. Deleting the folder is always
safe: the next build makes it again from nothing. Entries are written to a
temporary name in the same folder and renamed, and builds of one kind take a lock,
so two test runs (or two shells) never see a half-written image.

The KEEP_BUILDS most recently used builds of each kind stay (a lookup counts as a
use): checkouts at different versions of a recipe share the folder, and one of them
building its version must not delete the image another's test session is booting.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import ClassVar

KEEP_BUILDS = 3  # per kind


def default_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kumo" / "images"


def inputs_key(inputs: Mapping[str, str]) -> str:
    """A short stable digest of the build's inputs."""
    text = json.dumps(dict(sorted(inputs.items())), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def digest_tree(root: Path) -> str:
    """A digest of the names, modes and bytes of every file under `root`."""
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        digest.update(b"%o\0" % (path.stat().st_mode & 0o7777))
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:16]


class BuildCache:
    """Images by kind and inputs key."""

    def __init__(self, root: Path | None = None) -> None:
        self.root = root or default_root()

    # What each kind's build is, when not a qcow2 disk.
    SUFFIXES: ClassVar[dict[str, str]] = {"installer": ".iso"}

    def path(self, kind: str, key: str) -> Path:
        return self.root / f"{kind}-{key}{self.SUFFIXES.get(kind, '.qcow2')}"

    def lookup(self, kind: str, key: str) -> Path | None:
        """The cached image for these inputs, if one was built."""
        found = self.path(kind, key)
        if not found.is_file():
            return None
        with contextlib.suppress(OSError):
            os.utime(found)  # recently used builds are the ones kept
        return found

    @contextlib.contextmanager
    def locked(self, kind: str) -> Iterator[None]:
        """Hold the build lock of `kind` (other builders of it wait)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / f"{kind}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def ensure(
        self,
        kind: str,
        key: str,
        build: Callable[[], Path],
        *,
        steps: Callable[[str], None],
        rebuild: bool = False,
    ) -> tuple[Path, bool]:
        """(the cached build of `kind` with inputs `key`, whether it was there already).

        `build()` runs under the kind's lock only when the cache has no such build (or
        `rebuild` is asked), so concurrent callers build once.
        """
        with self.locked(kind):
            image = None if rebuild else self.lookup(kind, key)
            if image is not None:
                steps("using the cached build")
                return image, True
            return build(), False

    @contextlib.contextmanager
    def scratch(self, kind: str) -> Iterator[Path]:
        """A work folder on the cache's filesystem (so results rename into place)."""
        self.root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{kind}-build-", dir=self.root) as work:
            yield Path(work)

    def store(self, kind: str, key: str, built: Path, inputs: Mapping[str, str]) -> Path:
        """Move `built` into the cache as the image for `key`.

        Builds of the kind beyond the KEEP_BUILDS most recently used ones go.
        """
        final = self.path(kind, key)
        record = final.with_suffix(".json")
        partial = record.with_name(f".{record.name}.part")
        partial.write_text(json.dumps(dict(inputs), indent=2, sort_keys=True) + "\n")
        os.replace(partial, record)
        os.replace(built, final)
        entries: dict[str, list[Path]] = {}
        for path in self.root.glob(f"{kind}-*"):
            entries.setdefault(path.stem, []).append(path)

        def last_used(stem: str) -> float:
            times = []
            for path in entries[stem]:
                with contextlib.suppress(FileNotFoundError):  # another store removed it
                    times.append(path.stat().st_mtime)
            return max(times, default=0.0)

        for stem in sorted(entries, key=last_used, reverse=True)[KEEP_BUILDS:]:
            if stem != final.stem:
                for old in entries[stem]:
                    old.unlink(missing_ok=True)
        return final
