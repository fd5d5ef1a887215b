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


DataDir = Annotated[
    Path | None, typer.Option(help="Where kumo keeps its database, images and guests.")
]
Host = Annotated[str | None, typer.Option(help="Address to listen on.")]
Port = Annotated[int | None, typer.Option(help="Port to listen on.")]
Config = Annotated[Path | None, typer.Option(help="Config file (default DATA/kumo.conf).")]
NoUserConfig = Annotated[
    bool,
    typer.Option("--no-user-config",
                 help="Do not merge the `kumo` cloud into ~/.config/openstack/clouds.yaml."),
]


@app.command()
def up(
    data_dir: DataDir = None,
    host: Host = None,
    port: Port = None,
    config: Config = None,
    database: Annotated[
        str | None,
        typer.Option(help="Database URL: postgresql://USER:PASSWORD@HOST/NAME to share "
                          "one with `kumo api` processes (default: SQLite in DATA)."),
    ] = None,
    no_user_config: NoUserConfig = False,
) -> None:
    """Run every kumo service in this process until Ctrl-C or SIGTERM."""
    from kumo.server import serve

    serve(data_dir=data_dir, host=host, port=port, config_file=config, database=database,
          merge_user_clouds=not no_user_config)


@app.command()
def api(
    database: Annotated[
        str | None,
        typer.Option(help="The PostgreSQL database every kumo process shares "
                          "(postgresql://USER:PASSWORD@HOST/NAME; or database_url in kumo.conf)."),
    ] = None,
    data_dir: DataDir = None,
    host: Host = None,
    port: Port = None,
    config: Config = None,
    no_user_config: NoUserConfig = False,
) -> None:
    """Serve the APIs only (stateless: run several behind a load balancer); compute
    agents run the guests."""
    from kumo.server import serve

    serve(data_dir=data_dir, host=host, port=port, config_file=config, database=database,
          merge_user_clouds=not no_user_config, role="api")


@app.command()
def agent(
    database: Annotated[
        str | None,
        typer.Option(help="The PostgreSQL database every kumo process shares "
                          "(postgresql://USER:PASSWORD@HOST/NAME; or database_url in kumo.conf)."),
    ] = None,
    data_dir: DataDir = None,
    name: Annotated[
        str | None, typer.Option(help="This compute host's name (default: [agent] host, "
                                      "else the host name).")] = None,
    listen: Annotated[
        str | None, typer.Option(help="ADDRESS:PORT the API processes reach this agent at "
                                      "(default: [agent] listen, 0.0.0.0:8775).")] = None,
    config: Config = None,
) -> None:
    """Run this host's guests: register it, beat, take its jobs from PostgreSQL."""
    from kumo.server import serve

    serve(data_dir=data_dir, host=None, port=None, config_file=config, database=database,
          merge_user_clouds=False, role="agent", listen=listen, agent_host=name)


def main() -> None:
    app()
