"""What a lint rule is: an id, a severity, a check over an image, and maybe a fix."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from kumo.imagebuild.lint.view import ImageView


class Severity(StrEnum):
    error = "error"  # the image will not work as a cloud image: lint exits non-zero
    warning = "warning"  # works, but a feature users expect is missing
    info = "info"  # worth knowing


@dataclass(frozen=True)
class Finding:
    """One thing a rule found; `fix` says what to do (and `fixable`: `--fix` does it)."""

    rule: str
    severity: Severity
    message: str
    fix: str
    fixable: bool = False
    paths: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {
            "rule": self.rule, "severity": self.severity.value, "message": self.message,
            "fix": self.fix, "fixable": self.fixable, "paths": list(self.paths),
        }


@dataclass(frozen=True)
class WriteFile:
    """Replace (or create) a file; an existing file keeps its mode and owner."""

    path: str
    data: bytes
    mode: int = 0o644


@dataclass(frozen=True)
class RemoveFile:
    """Remove a file or symlink (not following it)."""

    path: str


@dataclass(frozen=True)
class MakeSymlink:
    path: str
    target: str


Edit = WriteFile | RemoveFile | MakeSymlink


class Rule:
    """A check for one requirement of OpenStack's image guide.

    Subclasses set `id`, `severity`, `title` and `fix`, implement `check()`, and
    when the fix is safe to automate (no network, no package install) `edits()`.
    """

    id: ClassVar[str]
    severity: ClassVar[Severity]
    title: ClassVar[str]
    fix: ClassVar[str]
    needs_root: ClassVar[bool] = True  # skipped when no root filesystem could be read

    def check(self, view: ImageView) -> list[Finding]:
        raise NotImplementedError

    def edits(self, view: ImageView) -> list[Edit]:
        """Changes that make check() pass; [] when there is no safe automatic fix."""
        return []

    @property
    def fixable(self) -> bool:
        return type(self).edits is not Rule.edits

    def finding(
        self,
        message: str,
        *,
        severity: Severity | None = None,
        fix: str | None = None,
        paths: tuple[str, ...] = (),
        fixable: bool | None = None,
    ) -> Finding:
        return Finding(
            rule=self.id,
            severity=severity or self.severity,
            message=message,
            fix=fix or self.fix,
            fixable=self.fixable if fixable is None else fixable,
            paths=paths,
        )
