"""`kumo image build KIND -o FILE.qcow2`: guest images from Debian packages.

Runs locally (no API): resolves package versions with apt, reuses a cached build
with the same inputs (~/.cache/kumo/images) or builds from nothing, and writes a
qcow2. Prints the Glance properties to set when uploading it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kumo.cli.image import app
from kumo.cli.output import human_size
from kumo.cli.progress import progress_bar
from kumo.errors import KumoError
from kumo.imagebuild import BUILD_STEPS, BUILDERS, builder_for


@app.command("build")
def build(
    kind: Annotated[str, typer.Argument(help=f"What to build: {', '.join(BUILDERS)}.")],
    output: Annotated[Path, typer.Option("-o", "--output",
                                         help="The file to write (qcow2; an ISO for installer).")],
    rebuild: Annotated[
        bool, typer.Option("--rebuild", help="Build from the packages even if cached.")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress display.")] = False,
) -> None:
    """Build a guest image from Debian packages (cached by its inputs)."""
    try:
        builder = builder_for(kind)
        with progress_bar(f"Building {kind}", total=BUILD_STEPS.get(kind), unit="steps",
                          enabled=not quiet) as bar:
            def step(description: str) -> None:
                bar.describe(f"{kind}: {description}")
                bar.advance(1)

            result = builder(output, steps=step, rebuild=rebuild)
    except KumoError as exc:
        typer.echo(f"kumo: {exc.message}", err=True)
        raise typer.Exit(1) from None
    origin = "from the cache" if result.cached else "built"
    fmt = result.disk_format
    size = human_size(result.sizes.get(fmt, output.stat().st_size))
    typer.echo(f"{result.path}: {size} {fmt} ({origin}, key {result.cache_key}) "
               f"in {result.seconds:.1f} s", err=True)
    properties = " ".join(f"--property {k}={v}" for k, v in result.properties.items())
    typer.echo(f"Upload with: kumo image create --disk-format {fmt} --file {result.path} "
               f"{properties} NAME", err=True)
    typer.echo(json.dumps({"path": str(result.path), "cached": result.cached,
                           "properties": result.properties}))
