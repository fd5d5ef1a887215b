"""Lint passes on the images kumo builds (the tiny one here; Debian in test_debian.py)."""

from __future__ import annotations

from pathlib import Path

from kumo.imagebuild.lint import Severity, has_errors, lint_image


def test_tiny_image_passes(tiny_image: Path) -> None:
    findings = lint_image(tiny_image)
    assert not has_errors(findings), findings
    # No cloud-init (its own script fetches metadata) and no growpart: warnings, said so.
    assert {(f.rule, f.severity) for f in findings} <= {
        ("cloud-init", Severity.warning), ("growpart", Severity.warning)}
    assert any("169.254.169.254" in f.message or "fetches metadata" in f.message
               for f in findings)
