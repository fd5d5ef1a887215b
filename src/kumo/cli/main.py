"""The `kumo` command. Every subcommand but `up` is a client of the HTTP API."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kumo.cli import cache, flavor, image, keypair, network, server

app = typer.Typer(
    name="kumo",
    help="A compact self-hosted IaaS that speaks OpenStack's APIs.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(image.app, name="image", help="Build, lint, convert and register disk images.")
app.add_typer(server.app, name="server", help="Boot and manage servers (QEMU guests).")
app.add_typer(keypair.app, name="keypair", help="SSH key pairs for servers.")
app.add_typer(flavor.app, name="flavor", help="Server sizes.")
app.add_typer(cache.app, name="cache", help="The compute node's image cache (_base).")
app.add_typer(network.app, name="network", help="This host's network plumbing (as root).")


@app.command()
def up(
    data_dir: Annotated[
        Path | None, typer.Option(help="Where kumo keeps its database, images and guests.")
    ] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on.")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on.")] = None,
    config: Annotated[
        Path | None, typer.Option(help="Config file (default DATA/kumo.conf).")
    ] = None,
    database: Annotated[
        str | None,
        typer.Option(help="Database URL: postgresql://USER:PASSWORD@HOST/NAME to share "
                          "one with `kumo api` processes (default: SQLite in DATA)."),
    ] = None,
    no_user_config: Annotated[
        bool,
        typer.Option(
            "--no-user-config",
            help="Do not merge the `kumo` cloud into ~/.config/openstack/clouds.yaml.",
        ),
    ] = False,
) -> None:
    """Run every kumo service in this process until Ctrl-C or SIGTERM."""
    from kumo.server import serve

    serve(
        data_dir=data_dir,
        host=host,
        port=port,
        config_file=config,
        database=database,
        merge_user_clouds=not no_user_config,
    )


def main() -> None:
    app()
