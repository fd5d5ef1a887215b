"""`kumo image lint IMAGE [--fix -o OUT] [--format json]`: check an image file offline.

Unlike the rest of `kumo image`, this reads a local file (raw or qcow2) and needs
no cloud. Exit status: 0 when no error-level rule fails (after fixing, with --fix),
1 when one does, 2 when the image cannot be read.
"""

from __future__ import annotations

import json
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from kumo.cli.image import app
from kumo.errors import KumoError
from kumo.imagebuild.lint import RULES, Finding, Severity, has_errors, lint_image

STYLES = {Severity.error: "bold red", Severity.warning: "yellow", Severity.info: "cyan"}


class LintFormat(StrEnum):
    table = "table"
    json = "json"


@app.command("lint")
def lint(
    image: Annotated[Path, typer.Argument(help="A raw or qcow2 disk image file.")],
    output_format: Annotated[
        LintFormat, typer.Option("--format", "-f", help="table (for people) or json.",
                                 case_sensitive=False)
    ] = LintFormat.table,
    disk_format: Annotated[
        str | None, typer.Option("--disk-format", help="raw or qcow2 (default: detected).")
    ] = None,
    fix: Annotated[
        bool, typer.Option("--fix", help="Write a fixed copy to -o (the input is not changed).")
    ] = False,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Where --fix writes the fixed image.")
    ] = None,
) -> None:
    """Check a disk image against OpenStack's image requirements, without booting it."""
    if fix and output is None:
        _fail("--fix needs -o OUT: the fixed image is written to a copy", 2)
    if output is not None and not fix:
        _fail("-o is only used with --fix", 2)
    try:
        if fix and output is not None:
            from kumo.imagebuild.lint.fix import fix_image

            result = fix_image(image, output, disk_format)
            fixed = [{"rule": rule, "edit": type(edit).__name__, "path": edit.path}
                     for rule, edit in result.applied]
            findings = result.after
            report(image, result.before, output_format, fixed=fixed, output=output,
                   after=findings)
        else:
            findings = lint_image(image, disk_format)
            report(image, findings, output_format)
    except KumoError as exc:
        _fail(exc.message, 2)
    except Exception as exc:  # the last net: one line, never a traceback
        _fail(f"cannot read {image}: it is damaged in a way kumo did not expect "
              f"({type(exc).__name__}: {exc}); please report this", 2)
    if has_errors(findings):
        raise typer.Exit(1)


def _fail(message: str, code: int) -> None:
    typer.echo(f"kumo: {message}", err=True)
    raise typer.Exit(code)


def report(image: Path, findings: list[Finding], output_format: LintFormat, *,
           fixed: list[dict[str, str]] | None = None, output: Path | None = None,
           after: list[Finding] | None = None) -> None:
    """Print the findings (and what --fix did) as a Rich table or JSON."""
    final = after if after is not None else findings
    if output_format is LintFormat.json:
        body: dict[str, object] = {
            "image": str(image),
            "rules": sorted(RULES),
            "findings": [f.as_dict() for f in findings],
            "errors": sum(f.severity is Severity.error for f in final),
            "warnings": sum(f.severity is Severity.warning for f in final),
            "passed": not has_errors(final),
        }
        if fixed is not None:
            body.update(output=str(output), fixed=fixed,
                        remaining=[f.as_dict() for f in after or []])
        json.dump(body, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    console = Console()
    _table(console, f"kumo image lint {image}", findings)
    if fixed is not None:
        console.print(f"[bold]Fixed copy:[/bold] {output}")
        for item in fixed:
            console.print(f"  {item['rule']}: {item['edit']} {item['path']}")
        if not fixed:
            console.print("  nothing to fix automatically")
        _table(console, f"after --fix: {output}", after or [])
    errors = sum(f.severity is Severity.error for f in final)
    verdict = "[bold red]FAIL[/]" if errors else "[bold green]PASS[/]"
    console.print(f"{verdict}: {errors} error(s), "
                  f"{sum(f.severity is Severity.warning for f in final)} warning(s), "
                  f"{len(RULES)} rules checked")


def _table(console: Console, title: str, findings: list[Finding]) -> None:
    if not findings:
        console.print(f"{title}: no findings")
        return
    table = Table(title=title, show_lines=True)
    for column in ("Severity", "Rule", "Message", "Fix"):
        table.add_column(column, overflow="fold")
    for f in findings:
        fix = f.fix + (" [green](--fix does this)[/]" if f.fixable else "")
        table.add_row(f"[{STYLES[f.severity]}]{f.severity.value}[/]", f.rule, f.message, fix)
    console.print(table)
