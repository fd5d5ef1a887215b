"""Build guest disk images from Debian packages (`kumo image build KIND -o FILE`).

Each kind is a module with a `build()` function of the `Builder` shape below, listed
in `BUILDERS` by dotted name so the CLI imports only the one asked for. The shared
pieces: `disk` (raw MBR + ext4 + GRUB disk without loop devices or mounts), `debs`
(Debian packages from the host's apt sources) and `cache` (builds keyed by inputs).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from kumo.errors import BadRequest

# What a build tells its caller as it goes: one short phrase per stage.
StepReporter = Callable[[str], None]


# Glance properties every image kumo builds shares (x86_64 BIOS guests on virtio).
COMMON_PROPERTIES = {
    "os_type": "linux",
    "architecture": "x86_64",
    "hw_disk_bus": "virtio",
    "hw_vif_model": "virtio",
    "hw_firmware_type": "bios",
}


def quiet(_step: str) -> None:
    """A StepReporter that shows nothing."""


@dataclass(frozen=True)
class BuildResult:
    """What `kumo image build` made, and how."""

    path: Path  # the qcow2 written to the caller's -o
    cached: bool  # True when the cache already held a build with these inputs
    cache_key: str
    seconds: float
    sizes: dict[str, int] = field(default_factory=dict)  # "raw", "qcow2": bytes on disk
    properties: dict[str, str] = field(default_factory=dict)  # Glance properties to set
    disk_format: str = "qcow2"  # what to upload it as


class Builder(Protocol):
    def __call__(
        self, out: Path, *, steps: StepReporter = quiet, rebuild: bool = False
    ) -> BuildResult: ...


# kind -> "module:function"; a module only needs to exist once its kind is asked for.
BUILDERS: dict[str, str] = {
    "tiny": "kumo.imagebuild.tiny:build",
    "debian": "kumo.imagebuild.debian:build",
    "installer": "kumo.imagebuild.installer:build",
}

# How many steps each builder reports (for a progress bar's total); unknown = None.
BUILD_STEPS: dict[str, int] = {"tiny": 7, "debian": 5, "installer": 8}


def builder_for(kind: str) -> Builder:
    """The build function of image `kind`, or BadRequest naming the kinds there are."""
    target = BUILDERS.get(kind)
    if target is None:
        raise BadRequest(f"unknown image kind {kind!r}; choose one of: {', '.join(BUILDERS)}")
    module_name, _, function = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name != module_name:
            raise
        raise BadRequest(f"image kind {kind!r} is not available in this kumo") from None
    builder: Builder = getattr(module, function)
    return builder
