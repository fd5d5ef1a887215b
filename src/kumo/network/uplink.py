"""The namespace's two ways to the host: the uplink veth and, when needed, pasta.

- The uplink: a veth pair, `kumo-<8 hex>` on the host (named like the namespace) and
  `uplink` inside, a port of the external network's bridge. The host end takes the
  external subnet's first address (172.24.4.1/24 by default), so the host reaches
  floating IPs directly, as devstack's br-ex does. That address and its connected
  route are the only change kumo makes to the host's network; the host's firewall
  and forwarding are not touched, and the host routes nothing for guests.
- Egress: `pasta` (Debian's passt) gives the namespace outbound TCP/UDP through the
  host's own sockets, without NAT or forwarding on the host. Only the namespace's own
  programs (the package proxy) use it; guests' packets towards it are dropped unless
  the operator allows outbound traffic.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import random
from pathlib import Path

from kumo.errors import BadRequest, ToolError
from kumo.network.daemons import Daemon
from kumo.network.netns import IPROUTE2, Namespace
from kumo.process import require, run

log = logging.getLogger("kumo.network")

NS_UPLINK = "uplink"
EGRESS_LINK = "kumo-out"
PASTA = "pasta"
PASTA_PACKAGE = "passt"


def host_routes() -> list[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]]:
    """The host's IPv4 routes (destination, device), default route excluded."""
    text = run("ip", ["-j", "-4", "route", "show", "table", "all"], package=IPROUTE2).stdout
    routes = []
    for entry in json.loads(text or b"[]"):
        dst = entry.get("dst", "")
        if dst in ("default", "") or entry.get("type") in ("local", "broadcast"):
            continue
        with contextlib.suppress(ValueError):
            routes.append((ipaddress.ip_network(dst, strict=False), str(entry.get("dev", ""))))
    return routes


def overlapping_host_route(cidr: str, *, own_link: str | None = None) -> str | None:
    """The host route `cidr` overlaps (kumo's own uplink route excepted), if any."""
    net = ipaddress.ip_network(cidr, strict=False)
    for route, dev in host_routes():
        if dev == own_link or route.version != net.version:
            continue
        if route.overlaps(net):
            return f"{route} dev {dev}"
    return None


def unused_cidr(base: str = "198.18.0.0/15", prefixlen: int = 24) -> str:
    """A subnet of `base` that no host route overlaps (for a second kumo on one host:
    each needs an external network of its own, tests and the conformance run too)."""
    routes = [route for route, _dev in host_routes()]
    candidates: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = list(
        ipaddress.ip_network(base).subnets(new_prefix=prefixlen))
    random.shuffle(candidates)  # two kumos starting at once rarely pick the same one
    for candidate in candidates:
        if not any(route.overlaps(candidate) for route in routes):
            return str(candidate)
    raise BadRequest(f"every /{prefixlen} of {base} overlaps a route of this host")


class Uplink:
    """The veth between the host and the external network's bridge."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.host_link = ns.name  # kumo-<8 hex>: 13 characters, under IFNAMSIZ

    def ensure(self, external_cidr: str) -> str:
        """Create the pair (idempotent); the host end gets the subnet's first address.

        Returns that address. Refuses a subnet that overlaps the host's own routes:
        the host could not tell the two apart.
        """
        net = ipaddress.ip_network(external_cidr)
        host_address = f"{next(net.hosts())}/{net.prefixlen}"
        clash = overlapping_host_route(external_cidr, own_link=self.host_link)
        if clash:
            raise BadRequest(
                f"the external network {external_cidr} overlaps the host's route {clash}; "
                "set another [network] external_cidr in kumo.conf")
        present = run("ip", ["-j", "link", "show"], package=IPROUTE2).stdout
        names = {entry["ifname"] for entry in json.loads(present or b"[]")}
        if self.host_link not in names:
            run("ip", ["link", "add", self.host_link, "type", "veth", "peer", "name",
                       NS_UPLINK, "netns", self.ns.name], package=IPROUTE2)
        addrs = run("ip", ["-j", "-4", "addr", "show", "dev", self.host_link],
                    package=IPROUTE2).stdout
        have = {f"{a['local']}/{a['prefixlen']}" for e in json.loads(addrs or b"[]")
                for a in e.get("addr_info", ())}
        for stale in have - {host_address}:
            run("ip", ["addr", "del", stale, "dev", self.host_link], package=IPROUTE2)
        if host_address not in have:
            run("ip", ["addr", "add", host_address, "dev", self.host_link], package=IPROUTE2)
        run("ip", ["link", "set", self.host_link, "up"], package=IPROUTE2)
        return host_address.split("/")[0]

    def remove(self) -> None:
        with contextlib.suppress(ToolError):
            run("ip", ["link", "del", self.host_link], package=IPROUTE2)


class Egress:
    """pasta attached to the namespace: outbound sockets for the namespace's programs."""

    def __init__(self, ns: Namespace, run_dir: Path) -> None:
        self.ns = ns
        self.pid_file = run_dir / "pasta.pid"
        self.daemon = Daemon(PASTA, self.pid_file, str(ns.path))

    def pid(self) -> int | None:
        return self.daemon.pid()

    def ensure(self) -> None:
        if self.pid() is not None:
            return
        binary = require(PASTA, PASTA_PACKAGE)
        self.pid_file.parent.mkdir(parents=True, exist_ok=True)
        self.pid_file.unlink(missing_ok=True)
        # --runas 0: as root pasta would switch to nobody, who may not enter the
        # namespace. --no-map-gw: the host's gateway address must not lead to the
        # host's own sockets. No port is forwarded in either direction.
        run(binary, ["--runas", "0:0", "--config-net", "--no-map-gw", "--quiet",
                     "-t", "none", "-u", "none", "-T", "none", "-U", "none",
                     "-I", EGRESS_LINK, "--netns", str(self.ns.path),
                     "-P", str(self.pid_file)], package=PASTA_PACKAGE, timeout=30)
        pid = self.daemon.wait_started("no pid file", timeout=5)
        log.info("network: outbound for the namespace's programs through pasta (pid %s)", pid)

    def stop(self) -> None:
        self.daemon.stop()
        self.pid_file.unlink(missing_ok=True)
