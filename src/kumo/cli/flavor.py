"""`kumo flavor ...`: server sizes over the Nova API."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from kumo.cli.client import CloudClient, CloudOption, cli_errors, connect
from kumo.cli.output import ColumnOption, FormatOption, OutputFormat, list_table, show_table

app = typer.Typer(no_args_is_help=True)
NOVA = {"OpenStack-API-Version": "compute 2.75"}


def find_flavor(cloud: CloudClient, name_or_id: str) -> dict[str, Any]:
    found = cloud.find("compute", "/flavors", name_or_id, kind="flavor", singular="flavor",
                       plural="flavors")
    flavor_id = found["id"]
    return dict(cloud.json("compute", "GET", f"/flavors/{flavor_id}", headers=NOVA)["flavor"])


def _row(flavor: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flavor.items() if k != "links"}


@app.command("list")
def list_(fmt: FormatOption = OutputFormat.table, column: ColumnOption = None,
          os_cloud: CloudOption = None) -> None:
    """List flavors, like `openstack flavor list`."""
    with cli_errors(), connect(os_cloud) as cloud:
        found = cloud.json("compute", "GET", "/flavors/detail", headers=NOVA)["flavors"]
        rows = [(f["id"], f["name"], f["ram"], f["disk"], f["OS-FLV-EXT-DATA:ephemeral"],
                 f["vcpus"], f["os-flavor-access:is_public"]) for f in found]
        list_table(("ID", "Name", "RAM", "Disk", "Ephemeral", "VCPUs", "Is Public"), rows,
                   fmt, column)


@app.command()
def show(flavor: Annotated[str, typer.Argument(help="Flavor name or ID.")],
         fmt: FormatOption = OutputFormat.table, column: ColumnOption = None,
         os_cloud: CloudOption = None) -> None:
    """Show one flavor."""
    with cli_errors(), connect(os_cloud) as cloud:
        show_table(_row(find_flavor(cloud, flavor)), fmt, column)


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Flavor name.")],
    vcpus: Annotated[int, typer.Option(help="Virtual CPUs.", min=1)] = 1,
    ram: Annotated[int, typer.Option(help="Memory in MB.", min=1)] = 256,
    disk: Annotated[int, typer.Option(help="Root disk in GB (0: the image's size).", min=0)]
    = 0,
    flavor_id: Annotated[str | None, typer.Option("--id", help="Flavor ID (default: a UUID)."
                                                  )] = None,
    private: Annotated[bool, typer.Option("--private", help="Not public.")] = False,
    fmt: FormatOption = OutputFormat.table,
    column: ColumnOption = None,
    os_cloud: CloudOption = None,
) -> None:
    """Create a flavor (admin only)."""
    spec: dict[str, Any] = {"name": name, "vcpus": vcpus, "ram": ram, "disk": disk,
                            "os-flavor-access:is_public": not private}
    if flavor_id:
        spec["id"] = flavor_id
    with cli_errors(), connect(os_cloud) as cloud:
        made = cloud.json("compute", "POST", "/flavors", json={"flavor": spec}, headers=NOVA)
        show_table(_row(made["flavor"]), fmt, column)


@app.command()
def delete(flavors: Annotated[list[str], typer.Argument(help="Flavor names or IDs.")],
           os_cloud: CloudOption = None) -> None:
    """Delete flavors (admin only; servers keep their size)."""
    with cli_errors(), connect(os_cloud) as cloud:
        for flavor in flavors:
            flavor_id = find_flavor(cloud, flavor)["id"]
            cloud.request("compute", "DELETE", f"/flavors/{flavor_id}", headers=NOVA)
