"""Debian packages from the host's apt sources: which version, download, unpack.

Only `apt-cache` and `apt-get download` touch the package lists and mirrors, so an
image is built from exactly what the host's /etc/apt/sources.list* offer, and the
versions chosen are known before anything is downloaded (the build cache key).
Downloaded .deb files are kept under ~/.cache/kumo/debs by name and version.
"""

from __future__ import annotations

import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kumo.errors import NotFound, ToolError
from kumo.process import run

APT_PACKAGE = "apt"
DPKG_PACKAGE = "dpkg"
APT_OPTIONS = ["-o", "DPkg::Lock::Timeout=300", "-o", "Acquire::Retries=3"]


class PackageUnavailable(NotFound):
    """A Debian package the build needs is not in the host's apt sources."""

    def __init__(self, package: str, detail: str = "") -> None:
        super().__init__(
            f"Debian package {package!r} is not available from this host's apt sources"
            + (f" ({detail})" if detail else "")
            + "; run `apt-get update` or check /etc/apt/sources.list"
        )
        self.package = package


@dataclass(frozen=True)
class Deb:
    """One package at the version apt would install now."""

    name: str
    version: str
    architecture: str
    depends: tuple[str, ...]  # first alternative of each Depends entry, no versions

    @property
    def filename(self) -> str:
        """The name `apt-get download` gives the file (epoch colon quoted)."""
        return f"{self.name}_{self.version.replace(':', '%3a')}_{self.architecture}.deb"


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kumo" / "debs"


def candidate(package: str) -> Deb:
    """The candidate version of `package` (what `apt-get install` would pick)."""
    return candidates([package])[package]


def candidates(packages: list[str]) -> dict[str, Deb]:
    """`candidate()` of several packages with one `apt-cache` call (it is slow to start)."""
    try:
        result = run("apt-cache", ["show", "--no-all-versions", *packages], package=APT_PACKAGE)
    except ToolError as exc:
        raise PackageUnavailable(", ".join(packages), exc.message) from None
    found: dict[str, Deb] = {}
    for record in _records(result.stdout.decode("utf-8", "replace")):
        name = record.get("Package", "")
        if name in packages and name not in found and "Version" in record:
            found[name] = Deb(
                name=name,
                version=record["Version"],
                architecture=record.get("Architecture", "amd64"),
                depends=parse_depends(record.get("Depends", "")),
            )
    for name in packages:
        if name not in found:
            raise PackageUnavailable(name, "apt-cache shows no version")
    return found


def real_package(meta: str, prefix: str) -> Deb:
    """The package a metapackage stands for (`linux-image-cloud-amd64` -> the kernel)."""
    deb = candidate(meta)
    for name in deb.depends:
        if name.startswith(prefix):
            return candidate(name)
    raise PackageUnavailable(meta, f"it depends on no {prefix}* package")


def parse_depends(field: str) -> tuple[str, ...]:
    """'a (>= 1), b | c, d:any' -> ('a', 'b', 'd')."""
    names = []
    for entry in field.split(","):
        first = entry.split("|")[0].strip()
        name = re.split(r"[\s(:]", first, maxsplit=1)[0]
        if name:
            names.append(name)
    return tuple(names)


def download(debs: list[Deb], dest: Path | None = None) -> dict[str, Path]:
    """Each package's .deb (downloaded unless already kept): name -> file."""
    dest = dest or cache_dir()
    dest.mkdir(parents=True, exist_ok=True)
    missing = [deb for deb in debs if not (dest / deb.filename).is_file()]
    if missing:
        # Into a fresh folder first so a half-downloaded file never looks complete.
        with tempfile.TemporaryDirectory(prefix="download-", dir=dest) as scratch:
            options = list(APT_OPTIONS)
            if os.geteuid() == 0:
                options += ["-o", "APT::Sandbox::User=root"]
            specs = [f"{deb.name}={deb.version}" for deb in missing]
            try:
                run("apt-get", [*options, "download", *specs], package=APT_PACKAGE,
                    cwd=Path(scratch), timeout=1800)
            except ToolError as exc:
                if "No space left" in exc.message:
                    raise  # the caller reports a full disk as such
                raise PackageUnavailable(", ".join(specs), exc.message) from None
            for deb in missing:
                got = Path(scratch) / deb.filename
                if not got.is_file():
                    raise PackageUnavailable(deb.name, f"apt-get did not write {deb.filename}")
                os.replace(got, dest / deb.filename)
    return {deb.name: dest / deb.filename for deb in debs}


def installed_version(package: str) -> str:
    """The version of `package` installed on this host ("" when it is not)."""
    try:
        result = run("dpkg-query", ["-W", "-f=${Version}", package], package=DPKG_PACKAGE)
    except ToolError:
        return ""
    return result.stdout.decode().strip()


def extract(deb_file: Path, dest: Path) -> Path:
    """Unpack a .deb's files (not its scripts) into `dest`; returns `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    run("dpkg-deb", ["-x", deb_file, dest], package=DPKG_PACKAGE, timeout=600)
    return dest


def _records(text: str) -> list[dict[str, str]]:
    """The paragraphs of `apt-cache show` output as field dicts."""
    records: list[dict[str, str]] = []
    record: dict[str, str] = {}
    key = ""
    for line in [*text.splitlines(), ""]:
        if not line.strip():
            if record:
                records.append(record)
            record, key = {}, ""
            continue
        if line[0] in " \t" and key:
            record[key] += "\n" + line.strip()
            continue
        key, _, value = line.partition(":")
        record[key] = value.strip()
    return records
