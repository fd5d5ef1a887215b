"""`kumo keypair ...`: SSH key pairs over the Nova API."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from kumo.cli.client import CloudOption, cli_errors, connect
from kumo.cli.output import ColumnOption, FormatOption, OutputFormat, list_table, show_table

app = typer.Typer(no_args_is_help=True)
NOVA = {"OpenStack-API-Version": "compute 2.10"}  # type in bodies; generation still allowed


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Name of the key pair.")],
    public_key: Annotated[Path | None, typer.Option(
        help="Import this public key file instead of generating a pair.")] = None,
    private_key: Annotated[Path | None, typer.Option(
        help="Write the generated private key here (0600) instead of printing it.")] = None,
    fmt: FormatOption = OutputFormat.table,
    column: ColumnOption = None,
    os_cloud: CloudOption = None,
) -> None:
    """Generate a key pair (the private key is shown once) or import a public key."""
    with cli_errors(), connect(os_cloud) as cloud:
        spec = {"name": name}
        if public_key is not None:
            spec["public_key"] = public_key.read_text()
        key = cloud.json("compute", "POST", "/os-keypairs", json={"keypair": spec},
                         headers=NOVA)["keypair"]
        secret = key.pop("private_key", None)
        if secret is None:
            show_table({k: v for k, v in key.items() if k != "public_key"}, fmt, column)
        elif private_key is not None:
            fd = os.open(private_key, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secret)
            show_table({k: v for k, v in key.items() if k != "public_key"}, fmt, column)
        else:
            sys.stdout.write(secret)


@app.command("list")
def list_(fmt: FormatOption = OutputFormat.table, column: ColumnOption = None,
          os_cloud: CloudOption = None) -> None:
    """Your key pairs."""
    with cli_errors(), connect(os_cloud) as cloud:
        keys = cloud.json("compute", "GET", "/os-keypairs", headers=NOVA)["keypairs"]
        rows = [(k["keypair"]["name"], k["keypair"]["fingerprint"], k["keypair"]["type"])
                for k in keys]
        list_table(("Name", "Fingerprint", "Type"), rows, fmt, column)


@app.command()
def show(
    name: Annotated[str, typer.Argument(help="Key pair name.")],
    public_key: Annotated[bool, typer.Option("--public-key",
                                             help="Print only the public key.")] = False,
    fmt: FormatOption = OutputFormat.table,
    column: ColumnOption = None,
    os_cloud: CloudOption = None,
) -> None:
    """Show one key pair."""
    with cli_errors(), connect(os_cloud) as cloud:
        key = cloud.json("compute", "GET", f"/os-keypairs/{name}", headers=NOVA)["keypair"]
        if public_key:
            sys.stdout.write(key["public_key"].rstrip("\n") + "\n")
        else:
            show_table(key, fmt, column)


@app.command()
def delete(names: Annotated[list[str], typer.Argument(help="Key pair names.")],
           os_cloud: CloudOption = None) -> None:
    """Delete key pairs (servers keep the key they booted with)."""
    with cli_errors(), connect(os_cloud) as cloud:
        for name in names:
            cloud.request("compute", "DELETE", f"/os-keypairs/{name}", headers=NOVA)
