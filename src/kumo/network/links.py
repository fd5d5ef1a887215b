"""Links and addresses inside kumo's namespace, read with `ip -j` and changed in one batch.

Every change of a pass goes to one `ip -batch` process, so a pass costs two reads
and at most one write whatever the size of the topology.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from kumo.network.netns import IPROUTE2, Namespace
from kumo.process import run


@dataclass
class Link:
    name: str
    kind: str  # "bridge", "tun", "veth", "vxlan", "" (other)
    master: str | None
    mtu: int
    up: bool
    addresses: set[str] = field(default_factory=set)  # "10.0.0.2/24"
    vni: int | None = None  # a VXLAN device's id
    local: str = ""  # a VXLAN device's underlay address
    mac: str = ""


def read_links(ns: Namespace) -> dict[str, Link]:
    """Every link of the namespace with its IPv4 addresses."""
    links: dict[str, Link] = {}
    for entry in ns.ip_json("-d", "link", "show"):
        info = entry.get("linkinfo") or {}
        data = info.get("info_data") or {}
        links[entry["ifname"]] = Link(
            name=entry["ifname"], kind=str(info.get("info_kind", "")),
            master=entry.get("master"), mtu=int(entry.get("mtu", 0)),
            up="UP" in entry.get("flags", ()),
            vni=int(data["id"]) if "id" in data else None, local=str(data.get("local", "")),
            mac=str(entry.get("address", "")),
        )
    for entry in ns.ip_json("-4", "addr", "show"):
        link = links.get(entry.get("ifname", ""))
        if link is None:
            continue
        for addr in entry.get("addr_info", ()):
            link.addresses.add(f"{addr['local']}/{addr['prefixlen']}")
    return links


class Batch:
    """`ip` commands collected during a pass and run together by `commit()`."""

    def __init__(self, ns: Namespace) -> None:
        self.ns = ns
        self.lines: list[str] = []

    def add(self, *words: str) -> None:
        self.lines.append(" ".join(words))

    def commit(self) -> None:
        if not self.lines:
            return
        script = "\n".join(self.lines) + "\n"
        self.lines = []
        run("ip", ["-n", self.ns.name, "-batch", "-"], package=IPROUTE2,
            input=script.encode())


def bridge_mac(host: str, bridge: str) -> str:
    """The MAC address of `bridge` on `host`: stable, and its own on every host.

    A bridge with no address of its own takes the lowest of its ports' MACs, and a
    tap's host-side MAC is random: the gateway's MAC would change whenever a guest
    came or went, and the other guests would send to the old one until their ARP
    entry aged out. Locally administered, unicast (02:...), different per host so
    that bridges joined by VXLAN never see their own address from the tunnel."""
    digest = hashlib.sha256(f"{host}/{bridge}".encode()).digest()
    return ":".join(f"{byte:02x}" for byte in (0x02, *digest[:5]))


def ensure_bridge(batch: Batch, links: dict[str, Link], name: str, mtu: int, mac: str) -> None:
    """A bridge that forwards at once (no STP delay), with the network's MTU and
    address `mac`, up."""
    link = links.get(name)
    if link is None:
        batch.add("link", "add", name, "address", mac, "mtu", str(mtu), "type", "bridge",
                  "stp_state", "0", "forward_delay", "0", "mcast_snooping", "0")
    else:
        if link.mtu != mtu:
            batch.add("link", "set", name, "mtu", str(mtu))
        if link.mac != mac:
            batch.add("link", "set", name, "address", mac)
    if link is None or not link.up:
        batch.add("link", "set", name, "up")


def ensure_port(batch: Batch, links: dict[str, Link], name: str, bridge: str, mtu: int,
                *, create_tap: bool = True) -> None:
    """A port of `bridge`: a tap for a guest (created when missing), with the MTU, up."""
    link = links.get(name)
    if link is None:
        if not create_tap:
            return
        batch.add("tuntap", "add", "dev", name, "mode", "tap")
    if link is None or link.master != bridge or link.mtu != mtu or not link.up:
        batch.add("link", "set", name, "master", bridge, "mtu", str(mtu), "up")


def ensure_addresses(batch: Batch, links: dict[str, Link], name: str, wanted: set[str]) -> None:
    """Exactly `wanted` IPv4 addresses on `name` (a link created in this batch has none)."""
    link = links.get(name)
    have = link.addresses if link is not None else set()
    for address in sorted(have - wanted):
        batch.add("addr", "del", address, "dev", name)
    for address in sorted(wanted - have):
        batch.add("addr", "add", address, "dev", name)


def remove_link(batch: Batch, name: str) -> None:
    batch.add("link", "del", name)
