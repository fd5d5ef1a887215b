"""`kumo image lint`: check a disk image against OpenStack's image requirements.

One rule class per requirement of the OpenStack image guide (seed 003), listed in
`RULES` by id. The image is read in place (raw or qcow2, never booted, mounted or
converted); see `kumo.imagebuild.reader`. `fix.fix_image()` applies the safe fixes
to a copy.
"""

from __future__ import annotations

from pathlib import Path

from kumo.imagebuild.lint.base import Edit, Finding, Rule, Severity
from kumo.imagebuild.lint.rules.boot import SerialConsole, VirtioDrivers
from kumo.imagebuild.lint.rules.cloudinit import CloudInit, Growpart
from kumo.imagebuild.lint.rules.layout import RootFilesystem
from kumo.imagebuild.lint.rules.network import (
    IfcfgHwaddr,
    PersistentNetGenerator,
    PersistentNetRules,
)
from kumo.imagebuild.lint.rules.services import Firewall, SshServer
from kumo.imagebuild.lint.view import ImageView
from kumo.imagebuild.reader import open_source

__all__ = ["RULES", "Edit", "Finding", "Rule", "Severity", "check_view", "lint_image"]

RULES: dict[str, Rule] = {
    rule.id: rule
    for rule in (
        RootFilesystem(), CloudInit(), Growpart(), PersistentNetRules(),
        PersistentNetGenerator(), IfcfgHwaddr(), SshServer(), Firewall(), SerialConsole(),
        VirtioDrivers(),
    )
}


def check_view(view: ImageView) -> list[Finding]:
    """Every rule's findings on an opened image, errors first."""
    findings: list[Finding] = []
    for rule in RULES.values():
        if rule.needs_root and view.root is None:
            continue
        findings += rule.check(view)
    order = {Severity.error: 0, Severity.warning: 1, Severity.info: 2}
    return sorted(findings, key=lambda f: order[f.severity])


def lint_image(path: Path, fmt: str | None = None) -> list[Finding]:
    """Lint the raw or qcow2 image at `path` (format detected when `fmt` is None).

    Raises ImageUnreadable (a BadRequest) when the file cannot be read as a disk.
    """
    with open_source(Path(path), fmt) as source:
        return check_view(ImageView(source))


def has_errors(findings: list[Finding]) -> bool:
    return any(f.severity is Severity.error for f in findings)
