"""`kumo network cleanup`: remove every piece of host plumbing a kumo built.

Unlike the other subcommands this one works on this host, not through the API:
guests' networks outlive `kumo up` on purpose (as guests do), so taking them down
is a deliberate act: the namespace with its bridges, taps, dnsmasq processes and
nftables tables, the package proxy, pasta, and the uplink veth on the host.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from kumo.config import Settings

app = typer.Typer(no_args_is_help=True)


def running_guests(instances: Path) -> list[str]:
    """Server ids whose QEMU still runs under `instances`."""
    from kumo.hypervisor import qemu

    found = []
    for folder in sorted(instances.iterdir()) if instances.is_dir() else ():
        try:
            pid = int((folder / qemu.PID_FILE).read_text().strip())
        except (OSError, ValueError):
            continue
        if qemu.is_our_qemu(pid, folder.name):
            found.append(folder.name)
    return found


@app.command()
def cleanup(
    data_dir: Annotated[
        Path | None, typer.Option(help="The data directory of the kumo to clean up after.")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="Config file (default DATA/kumo.conf).")
                      ] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Also when guests still run (they lose their network).")] = False,
) -> None:
    """Remove kumo's network namespace, its processes and the host's uplink (as root).

    Run it after `kumo up` has stopped (it refuses while one runs with the same data
    directory); servers are best deleted first.
    """
    from kumo.config import ConfigError, load_settings
    from kumo.datadir import DataDirError, DataDirInUse, held

    try:
        settings = load_settings(data_dir, config)
    except ConfigError as exc:
        raise SystemExit(f"kumo: {exc}") from None
    try:
        with held(settings.data_dir):
            _cleanup(settings, force)
    except DataDirInUse as exc:
        raise SystemExit(f"kumo: {exc}: it would rebuild what this removes") from None
    except DataDirError as exc:
        raise SystemExit(f"kumo: {exc}") from None


def _cleanup(settings: Settings, force: bool) -> None:
    import socket

    from kumo.errors import KumoError
    from kumo.network.bridge import BridgeNetworking

    driver = BridgeNetworking(settings, socket.gethostname())
    if not driver.ns.exists() and not driver.run_dir.exists():
        typer.echo(f"nothing to clean up: no namespace {driver.ns.name}")
        driver.uplink.remove()
        return
    guests = running_guests(settings.instances_path)
    if guests and not force:
        raise SystemExit(
            f"kumo: {len(guests)} guest(s) still run and would lose their network "
            f"({', '.join(guests[:5])}{'...' if len(guests) > 5 else ''}); delete those "
            "servers first, or pass --force")
    try:
        driver.teardown()
    except KumoError as exc:
        raise SystemExit(f"kumo: {exc.message}") from None
    typer.echo(f"removed namespace {driver.ns.name}, its dnsmasq, proxy and pasta processes, "
               f"and the host link {driver.uplink.host_link}")
