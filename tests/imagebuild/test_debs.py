"""Debian packages from the host's apt sources (needs the Debian mirror in sources.list)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from kumo.imagebuild import debs


def apt_candidate(package: str) -> str:
    policy = subprocess.run(["apt-cache", "policy", package], capture_output=True, text=True,
                            check=True).stdout
    return next(line.split(":", 1)[1].strip() for line in policy.splitlines()
                if line.strip().startswith("Candidate:"))


def test_candidates_are_the_versions_apt_would_install() -> None:
    found = debs.candidates(["busybox-static", "dropbear-bin"])
    assert found["busybox-static"].version == apt_candidate("busybox-static")
    assert found["dropbear-bin"].version == apt_candidate("dropbear-bin")
    assert "libc6" in found["dropbear-bin"].depends


def test_unknown_package_is_a_clear_error() -> None:
    with pytest.raises(debs.PackageUnavailable, match=r"no-such-package-kumo.*apt-get update"):
        debs.candidate("no-such-package-kumo")


def test_depends_field_keeps_first_alternatives_without_versions() -> None:
    field = "libc6 (>= 2.34), initramfs-tools | linux-initramfs-tool, python3:any"
    assert debs.parse_depends(field) == ("libc6", "initramfs-tools", "python3")


def test_download_and_extract_give_the_package_files(tmp_path: Path) -> None:
    busybox = debs.candidate("busybox-static")
    files = debs.download([busybox], tmp_path / "debs")
    assert files["busybox-static"].name == busybox.filename  # epoch ':' as apt writes it
    tree = debs.extract(files["busybox-static"], tmp_path / "tree")
    result = subprocess.run([str(tree / "bin" / "busybox"), "echo", "ok"], capture_output=True,
                            text=True, check=True)
    assert result.stdout == "ok\n"
    # Kept: a second download does not fetch again.
    mtime = files["busybox-static"].stat().st_mtime_ns
    assert debs.download([busybox], tmp_path / "debs")["busybox-static"].stat().st_mtime_ns \
        == mtime
