"""`kumo cache list` / `kumo cache clean`: the compute node's image cache (`_base`).

Both call the admin-only compute route `/v2.1/os-kumo-cache` (kumo.hypervisor.routes).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kumo.cli.client import CloudOption, cli_errors, connect
from kumo.cli.output import ColumnOption, FormatOption, OutputFormat, list_table

app = typer.Typer(no_args_is_help=True)

PATH = "/os-kumo-cache"
COLUMNS = ("Base file", "Image", "Size", "In use by", "Age", "Verdict")


def human_age(seconds: int) -> str:
    for unit, length in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= length:
            return f"{seconds // length}{unit}"
    return f"{seconds}s"


def rows(files: list[dict[str, Any]], fmt: OutputFormat) -> list[list[Any]]:
    table = fmt is OutputFormat.table
    return [
        [
            f["name"],
            f.get("image_id") or ("?" if table else None),
            f["size"],
            f.get("used_by") or ([] if not table else ""),
            human_age(int(f["age_seconds"])) if table else int(f["age_seconds"]),
            f["verdict"],
        ]
        for f in files
    ]


@app.command("list")
def list_(
    fmt: FormatOption = OutputFormat.table,
    column: ColumnOption = None,
    os_cloud: CloudOption = None,
) -> None:
    """Show every base file: its image, size, servers using it, age and verdict (admin)."""
    with cli_errors(), connect(os_cloud) as cloud:
        body = cloud.json("compute", "GET", PATH)
        list_table(COLUMNS, rows(body["base_files"], fmt), fmt, column)


@app.command("clean")
def clean(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be removed.")
    ] = False,
    fmt: FormatOption = OutputFormat.table,
    column: ColumnOption = None,
    os_cloud: CloudOption = None,
) -> None:
    """Run an image cache manager pass now: remove unused base files old enough (admin)."""
    with cli_errors(), connect(os_cloud) as cloud:
        body = cloud.json("compute", "POST", PATH + "/clean", json={"dry_run": dry_run})
        list_table(COLUMNS, rows(body["base_files"], fmt), fmt, column)
        if fmt is OutputFormat.table:
            removed = body.get("removed", [])
            if dry_run:
                would = [f["name"] for f in body["base_files"] if f["verdict"] == "removable"]
                typer.echo(f"dry run: would remove {len(would)} base file(s)")
            else:
                typer.echo(f"removed {len(removed)} base file(s)")
