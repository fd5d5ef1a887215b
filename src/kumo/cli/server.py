"""`kumo server ...`: boot and manage servers over the Nova API, and SSH into them."""

from __future__ import annotations

import base64
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from kumo.cli.client import CLIError, CloudClient, CloudOption, cli_errors, connect
from kumo.cli.output import ColumnOption, FormatOption, OutputFormat, list_table, show_table

app = typer.Typer(no_args_is_help=True)

NOVA = {"OpenStack-API-Version": "compute 2.96"}
SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR"]


def nova(cloud: CloudClient, method: str, path: str, **kwargs: Any) -> Any:
    """A Nova call at the microversion whose shapes this CLI reads."""
    return cloud.json("compute", method, path, headers=NOVA, **kwargs)


def find_server(cloud: CloudClient, name_or_id: str) -> dict[str, Any]:
    response = cloud.request("compute", "GET", f"/servers/{name_or_id}", headers=NOVA,
                             check=False)
    if response.status_code == 200:
        return dict(response.json()["server"])
    body = nova(cloud, "GET", "/servers/detail", params={"name": f"^{name_or_id}$"})
    matches = [s for s in body["servers"] if s["name"] == name_or_id]
    if not matches:
        raise CLIError(f"No server with a name or ID of '{name_or_id}' exists.")
    if len(matches) > 1:
        raise CLIError(f"More than one server exists with the name '{name_or_id}'; use its ID.")
    return dict(matches[0])


def networks(server: dict[str, Any]) -> str:
    return "; ".join(f"{net}={', '.join(a['addr'] for a in addrs)}"
                     for net, addrs in sorted(server.get("addresses", {}).items()))


def shown(server: dict[str, Any]) -> dict[str, Any]:
    """The fields `openstack server show` prints, flattened the same way."""
    record = {k: v for k, v in server.items() if k not in ("links", "addresses")}
    record["addresses"] = networks(server)
    flavor = server.get("flavor", {})
    record["flavor"] = flavor.get("original_name") or flavor.get("id")
    image = server.get("image")  # "" for a server booted from a volume
    record["image"] = image.get("id", "") if isinstance(image, dict) else ""
    record["properties"] = record.pop("metadata", {})
    record["security_groups"] = ", ".join(g["name"] for g in server.get("security_groups", []))
    return record


def wait_for(cloud: CloudClient, server_id: str, wanted: set[str], timeout: float,
             deleted: bool = False) -> dict[str, Any] | None:
    """Poll until the server reaches a wanted status (or ERROR, or is gone when `deleted`)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = cloud.request("compute", "GET", f"/servers/{server_id}", headers=NOVA,
                                 check=False)
        if response.status_code == 404 and deleted:
            return None
        if response.status_code == 200:
            server = dict(response.json()["server"])
            if server["status"] == "ERROR" and "ERROR" not in wanted:
                fault = server.get("fault", {}).get("message", "no fault recorded")
                raise CLIError(f"server {server['name']} went to ERROR: {fault}")
            if server["status"] in wanted and not server.get("OS-EXT-STS:task_state"):
                return server
        time.sleep(1)
    raise CLIError(f"server {server_id} did not reach {'/'.join(sorted(wanted))} in {timeout}s")


@app.command()
def create(
    name: Annotated[str, typer.Argument(help="Name of the new server.")],
    image: Annotated[str, typer.Option(help="Image name or ID to boot.")],
    flavor: Annotated[str, typer.Option(help="Flavor name or ID.")] = "m1.tiny",
    key_name: Annotated[str | None, typer.Option(help="Key pair to install.")] = None,
    user_data: Annotated[Path | None, typer.Option(help="File passed as user data.")] = None,
    config_drive: Annotated[bool, typer.Option(help="Attach a config drive.")] = False,
    property_: Annotated[list[str] | None, typer.Option(
        "--property", help="Metadata key=value (repeat for more).")] = None,
    security_group: Annotated[list[str] | None, typer.Option(
        help="Security group (repeat for more; default: default).")] = None,
    wait: Annotated[bool, typer.Option(help="Wait until the server is ACTIVE.")] = False,
    timeout: Annotated[float, typer.Option(help="Seconds --wait waits.")] = 600,
    fmt: FormatOption = OutputFormat.table,
    column: ColumnOption = None,
    os_cloud: CloudOption = None,
) -> None:
    """Boot a server, like `openstack server create`."""
    with cli_errors(), connect(os_cloud) as cloud:
        image_id = cloud.find("image", "/v2/images", image, kind="image")["id"]
        flavor_id = cloud.find("compute", "/flavors", flavor, kind="flavor", singular="flavor",
                               plural="flavors")["id"]
        spec: dict[str, Any] = {"name": name, "imageRef": image_id, "flavorRef": flavor_id,
                                "networks": "auto", "config_drive": config_drive}
        if key_name:
            spec["key_name"] = key_name
        if user_data:
            spec["user_data"] = base64.b64encode(user_data.read_bytes()).decode()
        if property_:
            spec["metadata"] = dict(_pair(p) for p in property_)
        if security_group:
            spec["security_groups"] = [{"name": g} for g in security_group]
        server_id = nova(cloud, "POST", "/servers", json={"server": spec})["server"]["id"]
        server = wait_for(cloud, server_id, {"ACTIVE"}, timeout) if wait else \
            nova(cloud, "GET", f"/servers/{server_id}")["server"]
        show_table(shown(server or {}), fmt, column)


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise CLIError(f"--property expects key=value, got {text!r}")
    return key, value


@app.command("list")
def list_(
    all_projects: Annotated[bool, typer.Option(help="Every project's servers (admin).")] = False,
    name: Annotated[str | None, typer.Option(help="Only names matching this regex.")] = None,
    status: Annotated[str | None, typer.Option(help="Only servers in this status.")] = None,
    fmt: FormatOption = OutputFormat.table,
    column: ColumnOption = None,
    os_cloud: CloudOption = None,
) -> None:
    """List servers, like `openstack server list`."""
    params = {k: v for k, v in (("name", name), ("status", status)) if v}
    if all_projects:
        params["all_tenants"] = "1"
    with cli_errors(), connect(os_cloud) as cloud:
        found = nova(cloud, "GET", "/servers/detail", params=params)["servers"]
        rows = [(s["id"], s["name"], s["status"], networks(s),
                 s.get("metadata", {}).get("kumo:ssh", ""), s["flavor"].get("original_name"))
                for s in found]
        list_table(("ID", "Name", "Status", "Networks", "SSH", "Flavor"), rows, fmt, column)


@app.command()
def show(
    server: Annotated[str, typer.Argument(help="Server name or ID.")],
    fmt: FormatOption = OutputFormat.table,
    column: ColumnOption = None,
    os_cloud: CloudOption = None,
) -> None:
    """Show one server, like `openstack server show`."""
    with cli_errors(), connect(os_cloud) as cloud:
        show_table(shown(find_server(cloud, server)), fmt, column)


@app.command()
def delete(
    servers: Annotated[list[str], typer.Argument(help="Server names or IDs.")],
    wait: Annotated[bool, typer.Option(help="Wait until they are gone.")] = False,
    os_cloud: CloudOption = None,
) -> None:
    """Delete servers (their QEMU process and files go too)."""
    with cli_errors(), connect(os_cloud) as cloud:
        ids = [find_server(cloud, s)["id"] for s in servers]
        for server_id in ids:
            cloud.request("compute", "DELETE", f"/servers/{server_id}", headers=NOVA)
        if wait:
            for server_id in ids:
                wait_for(cloud, server_id, set(), 300, deleted=True)


def _action(server: str, body: dict[str, Any], wanted: str | None, wait: bool,
            os_cloud: str | None) -> None:
    with cli_errors(), connect(os_cloud) as cloud:
        server_id = find_server(cloud, server)["id"]
        cloud.request("compute", "POST", f"/servers/{server_id}/action", json=body, headers=NOVA)
        if wait and wanted:
            wait_for(cloud, server_id, {wanted}, 300)


WaitOption = Annotated[bool, typer.Option(help="Wait until the action is done.")]
ServerArg = Annotated[str, typer.Argument(help="Server name or ID.")]


@app.command()
def start(server: ServerArg, wait: WaitOption = False, os_cloud: CloudOption = None) -> None:
    """Power a SHUTOFF server on."""
    _action(server, {"os-start": None}, "ACTIVE", wait, os_cloud)


@app.command()
def stop(server: ServerArg, wait: WaitOption = False, os_cloud: CloudOption = None) -> None:
    """Power a server off (ACPI first, then forced)."""
    _action(server, {"os-stop": None}, "SHUTOFF", wait, os_cloud)


@app.command()
def reboot(
    server: ServerArg,
    hard: Annotated[bool, typer.Option("--hard", help="Reset instead of asking the guest.")]
    = False,
    wait: WaitOption = False,
    os_cloud: CloudOption = None,
) -> None:
    """Reboot a server (soft by default)."""
    _action(server, {"reboot": {"type": "HARD" if hard else "SOFT"}}, "ACTIVE", wait, os_cloud)


@app.command()
def console(
    server: ServerArg,
    lines: Annotated[int | None, typer.Option(help="Only the last N lines.")] = None,
    os_cloud: CloudOption = None,
) -> None:
    """Print the server's serial console log."""
    with cli_errors(), connect(os_cloud) as cloud:
        server_id = find_server(cloud, server)["id"]
        body = nova(cloud, "POST", f"/servers/{server_id}/action",
                    json={"os-getConsoleOutput": {"length": lines}})
        sys.stdout.write(body["output"])


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def ssh(
    ctx: typer.Context,
    server: ServerArg,
    identity: Annotated[Path | None, typer.Option("-i", "--identity",
                                                  help="Private key file.")] = None,
    login: Annotated[str | None, typer.Option("-l", "--login", help="User to log in as "
                                              "(default: the image's os_admin_user).")] = None,
    os_cloud: CloudOption = None,
) -> None:
    """SSH into a server (its floating IP, else its forwarded port): kumo server ssh NAME."""
    with cli_errors(), connect(os_cloud) as cloud:
        found = find_server(cloud, server)
        endpoint = ssh_endpoint(found)
        if not endpoint:
            raise CLIError(
                f"server {found['name']} has no floating IP and no SSH forward: it is "
                f"{found['status']}, or no security group rule allows tcp/22 (openstack "
                "security group rule create --protocol tcp --dst-port 22 default), or it "
                "needs a floating IP (openstack server add floating ip)")
        user = login or _admin_user(cloud, found)
    program = shutil.which("ssh")
    if program is None:
        typer.echo("kumo: ssh is not installed; install it with: apt-get install "
                   "openssh-client", err=True)
        raise typer.Exit(1)
    host, port = endpoint.rsplit(":", 1)
    argv = [program, *SSH_OPTIONS, "-p", port]
    if identity is not None:
        argv += ["-i", str(identity)]
    argv.append(f"{user}@{host}")
    argv += list(ctx.args)
    os.execv(program, argv)


def ssh_endpoint(server: dict[str, Any]) -> str | None:
    """HOST:PORT to SSH to: the server's floating IP, else kumo's user-mode SSH forward."""
    for entries in server.get("addresses", {}).values():
        for entry in entries:
            if entry.get("OS-EXT-IPS:type") == "floating" and entry["addr"] != "127.0.0.1":
                return f"{entry['addr']}:22"
    endpoint = server.get("metadata", {}).get("kumo:ssh")
    return str(endpoint) if endpoint else None


def _admin_user(cloud: CloudClient, server: dict[str, Any]) -> str:
    """The image's os_admin_user (Glance property), else root as nova's docs assume.

    A server booted from a volume has no image: its root volume keeps the properties
    of the image it was made from (Cinder's volume_image_metadata).
    """
    image = server.get("image")
    if isinstance(image, dict) and image.get("id"):
        response = cloud.request("image", "GET", f"/v2/images/{image['id']}", check=False)
        if response.status_code == 200:
            return str(response.json().get("os_admin_user") or "root")
        return "root"
    for volume in server.get("os-extended-volumes:volumes_attached", [])[:1]:
        response = cloud.request("block-storage", "GET", f"/volumes/{volume['id']}",
                                 check=False)
        if response.status_code == 200:
            meta = response.json()["volume"].get("volume_image_metadata") or {}
            return str(meta.get("os_admin_user") or "root")
    return "root"
