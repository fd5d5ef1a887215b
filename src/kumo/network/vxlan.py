"""Networks that span hosts: each tenant network's bridge joined to the other hosts' by VXLAN.

Neutron's Linux bridge agent with l2population, on kumo's namespace:
- one VXLAN device per tenant network, `vxlan-<VNI>` (Neutron's name), a port of the
  network's bridge. It is made from the host's own namespace and moved into kumo's, so
  its UDP socket (port 4789) stays on the host's underlay address, the host's
  `host_ip` in the registry (`[agent] my_ip`), while the device sits beside the bridge;
- no learning: the forwarding entries come from the database. Every other host gets an
  all-zeros entry (broadcast, ARP, unknown unicast are sent to each of them), and every
  port bound to another host an entry of its MAC to that host's address;
- devices exist only while the cloud has another host: one machine alone opens no socket.

The external network is never joined: each host reaches its own floating IPs through its
own uplink, so a floating IP answers on the host where its server runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from kumo.errors import ToolError
from kumo.network.links import Link
from kumo.network.netns import IPROUTE2, Namespace
from kumo.network.topology import VXLAN_PREFIX, Topology, vxlan_name
from kumo.process import run

PORT = 4789  # IANA's VXLAN port (Linux's own default is 8472)
FLOOD = "00:00:00:00:00:00"


@dataclass(frozen=True)
class Segment:
    """What one network's VXLAN device must be on this host."""

    vni: int
    bridge: str
    mtu: int
    local: str  # this host's underlay address
    # (MAC, remote host address): FLOOD for each other host, then each remote port's MAC
    entries: frozenset[tuple[str, str]] = field(default_factory=frozenset)

    @property
    def name(self) -> str:
        return vxlan_name(self.vni)


def plan(topology: Topology, host: str) -> dict[str, Segment]:
    """Device name -> segment, for every tenant network, when another host exists."""
    addresses = {name: ip for name, ip in topology.tunnels if ip}
    local = addresses.get(host)
    remotes = {name: ip for name, ip in addresses.items() if name != host and ip != local}
    if local is None or not remotes:
        return {}
    floods = {(FLOOD, ip) for ip in remotes.values()}
    segments: dict[str, Segment] = {}
    for network in topology.networks:
        if network.external:
            continue
        ports = {(p.mac.lower(), remotes[p.host_id]) for p in topology.ports_on(network.id)
                 if p.host_id in remotes and p.mac}
        segment = Segment(vni=network.vni, bridge=network.bridge, mtu=network.mtu,
                          local=local, entries=frozenset(floods | ports))
        segments[segment.name] = segment
    return segments


def matches(link: Link, segment: Segment) -> bool:
    """An existing device that can stay (same VNI and underlay address)."""
    return link.kind == "vxlan" and link.vni == segment.vni and link.local == segment.local


def create(ns: Namespace, segments: list[Segment]) -> list[Link]:
    """Make the devices from this process's (the host's) namespace, straight into `ns`;
    the links made (not yet on a bridge, down).

    The kernel keeps a VXLAN device's socket in the namespace it was made from.
    """
    if not segments:
        return []
    script = "".join(
        f"link add {s.name} netns {ns.name} mtu {s.mtu} type vxlan id {s.vni} "
        f"local {s.local} dstport {PORT} nolearning\n" for s in segments)
    run("ip", ["-batch", "-"], package=IPROUTE2, input=script.encode())
    return [Link(name=s.name, kind="vxlan", master=None, mtu=s.mtu, up=False, vni=s.vni,
                 local=s.local) for s in segments]


def read_entries(ns: Namespace) -> dict[str, set[tuple[str, str]]]:
    """Device -> its static (MAC, remote address) entries, as `bridge fdb` lists them."""
    text = run("bridge", ["-j", "-n", ns.name, "fdb", "show"], package=IPROUTE2).stdout
    found: dict[str, set[tuple[str, str]]] = {}
    for entry in json.loads(text or b"[]"):
        device = str(entry.get("ifname", ""))
        if device.startswith(VXLAN_PREFIX) and entry.get("dst"):
            found.setdefault(device, set()).add((str(entry["mac"]).lower(), str(entry["dst"])))
    return found


def sync_entries(ns: Namespace, segments: dict[str, Segment]) -> None:
    """Exactly each segment's forwarding entries on its device, in one `bridge -batch`."""
    have = read_entries(ns)
    lines = []
    for name, segment in sorted(segments.items()):
        current = have.get(name, set())
        for mac, dst in sorted(current - segment.entries):
            lines.append(f"fdb del {mac} dev {name} dst {dst}\n")
        for mac, dst in sorted(segment.entries - current):
            lines.append(f"fdb append {mac} dev {name} dst {dst}\n")
    if lines:
        try:
            run("bridge", ["-n", ns.name, "-batch", "-"], package=IPROUTE2,
                input="".join(lines).encode())
        except ToolError as exc:
            raise ToolError("bridge", f"forwarding entries of VXLAN devices: {exc.message}"
                            ) from None
