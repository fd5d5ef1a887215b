"""`BridgeNetworking`: real guest networks in kumo's own network namespace.

Per network a Linux bridge (`brq…`), per guest port a tap (`tap…`), one dnsmasq, and
the addresses the namespace answers on (the DHCP server, router interfaces, the
metadata address 169.254.169.254/32). One nftables script filters and translates
everything (see `firewall`). The external network's bridge holds the uplink veth,
router gateways and floating IPs. A pass makes all of it match the topology and
removes what is left over, so it is also how kumo recovers after a crash.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import socket
import threading
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Protocol

from kumo.config import Settings
from kumo.errors import ToolError
from kumo.network import firewall, vxlan
from kumo.network.dnsmasq import PACKAGE as DNSMASQ_PACKAGE
from kumo.network.dnsmasq import Dnsmasq
from kumo.network.links import (
    Batch,
    Link,
    bridge_mac,
    ensure_addresses,
    ensure_bridge,
    ensure_port,
    read_links,
)
from kumo.network.netns import Namespace, namespace_name
from kumo.network.proxy import PackageProxy, host_mirrors
from kumo.network.topology import VXLAN_PREFIX, NetworkPlan, Topology
from kumo.network.uplink import EGRESS_LINK, NS_UPLINK, Egress, Uplink
from kumo.process import require

log = logging.getLogger("kumo.network")

RUN_ROOT = Path("/run/kumo")
METADATA_PORT = 80
_OURS = ("brq", "tap", VXLAN_PREFIX)
CONNTRACK_PACKAGE = "conntrack"


class MetadataListeners(Protocol):
    """The part of the metadata service that serves guests on real networks."""

    def open_network(self, network_id: str, sock: socket.socket,
                     resolve: Callable[[str], str | None]) -> None: ...

    def close_network(self, network_id: str) -> None: ...


def network_run_dir(settings: Settings) -> Path:
    """Where dnsmasq, pasta and the proxy keep their files: /run/kumo/<namespace>.

    Not under DATA: dnsmasq reads its hosts as `nobody`, who cannot enter /root; and
    like the namespace itself these files do not outlive a reboot.
    """
    return RUN_ROOT / namespace_name(settings.data_dir)


class BridgeNetworking:
    """The `bridge` driver (the default as root)."""

    name = "bridge"

    def __init__(self, settings: Settings, host: str, *,
                 metadata: Callable[[], MetadataListeners | None] = lambda: None,
                 resolve: Callable[[str, str], str | None] | None = None) -> None:
        self.settings = settings
        self.host = host
        self.ns = Namespace(namespace_name(settings.data_dir))
        self.run_dir = network_run_dir(settings)
        self.uplink = Uplink(self.ns)
        self.egress = Egress(self.ns, self.run_dir)
        self.proxy = PackageProxy(self.ns, self.run_dir, settings.data_dir / "package-cache")
        self._metadata = metadata
        self._resolve = resolve
        self._listening: dict[str, str] = {}  # network id -> bridge
        self._ruleset: firewall.Ruleset | None = None
        self._lock = threading.Lock()

    # -- start ---------------------------------------------------------------------

    def setup(self) -> None:
        """The namespace, its kernel settings, the uplink, and the way out if needed."""
        check_tools(self.settings)
        RUN_ROOT.mkdir(mode=0o755, parents=True, exist_ok=True)
        self.run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        (self.run_dir / "dhcp").mkdir(mode=0o755, exist_ok=True)
        self.ns.create()
        self.ns.sysctl("net.ipv4.ip_forward", "1")
        # Bridged IPv4 through the inet hooks: the security groups need conntrack, and
        # this kernel has none for the bridge family. Per namespace: the host's own
        # setting is untouched.
        self.ns.sysctl("net.bridge.bridge-nf-call-iptables", "1")
        self.ns.sysctl("net.ipv6.conf.all.disable_ipv6", "1")
        self.ns.sysctl("net.ipv6.conf.default.disable_ipv6", "1")
        self.uplink.ensure(self.settings.network.external_cidr)
        if self.settings.network.package_proxy or self.settings.compute.allow_guest_outbound:
            self.egress.ensure()
        log.info("network: bridge driver in namespace %s (host link %s)", self.ns.name,
                 self.uplink.host_link)

    # -- a pass --------------------------------------------------------------------

    def apply(self, topology: Topology) -> None:
        with self._lock:
            self._apply(topology)

    def _apply(self, topology: Topology) -> None:
        external = next((n for n in topology.networks if n.external), None)
        links = read_links(self.ns)
        segments = vxlan.plan(topology, self.host)
        self._make_segments(links, segments)
        batch = Batch(self.ns)
        wanted = self._wanted_links(topology, external) | set(segments)
        for name in sorted(links):
            if name.startswith(_OURS) and name not in wanted:
                batch.add("link", "del", name)
        for network in topology.networks:
            ensure_bridge(batch, links, network.bridge, network.mtu,
                          bridge_mac(self.host, network.bridge))
            if not network.admin_up:
                batch.add("link", "set", network.bridge, "down")
        for segment in segments.values():
            ensure_port(batch, links, segment.name, segment.bridge, segment.mtu,
                        create_tap=False)
        for port in topology.guest_ports(self.host):
            home = topology.network(port.network_id)
            if home is None:
                continue
            ensure_port(batch, links, port.tap, home.bridge, home.mtu)
            if not port.admin_up:
                batch.add("link", "set", port.tap, "down")
        if external is not None:
            ensure_port(batch, links, NS_UPLINK, external.bridge, external.mtu, create_tap=False)
        for bridge, addresses in self._addresses(topology, self.host).items():
            ensure_addresses(batch, links, bridge, addresses)
        batch.commit()
        vxlan.sync_entries(self.ns, segments)

        context = firewall.Context(
            host=self.host, external_bridge=external.bridge if external else None,
            egress_link=EGRESS_LINK if self.egress.pid() is not None else None,
            allow_outbound=self.settings.compute.allow_guest_outbound)
        ruleset = firewall.render(topology, context)
        firewall.apply(self.ns, ruleset)
        self._forget_connections(firewall.shrunk(self._ruleset, ruleset), ruleset)
        self._ruleset = ruleset

        self._sync_dhcp(topology)
        self._sync_metadata(topology)
        self._sync_proxy()

    def _make_segments(self, links: dict[str, Link], segments: dict[str, vxlan.Segment]
                       ) -> None:
        """Replace VXLAN devices whose VNI or underlay address changed; make missing ones.

        Made before the pass's batch (and added to `links`), which then puts them on
        their bridges."""
        for name, segment in segments.items():
            link = links.get(name)
            if link is not None and not vxlan.matches(link, segment):
                self.ns.ip("link", "del", name)
                del links[name]
        made = vxlan.create(self.ns, [s for name, s in sorted(segments.items())
                                      if name not in links])
        links.update((link.name, link) for link in made)

    def _wanted_links(self, topology: Topology, external: NetworkPlan | None) -> set[str]:
        wanted = {n.bridge for n in topology.networks}
        wanted |= {p.tap for p in topology.guest_ports(self.host)
                   if topology.network(p.network_id) is not None}
        return wanted

    @staticmethod
    def _addresses(topology: Topology, host: str) -> dict[str, set[str]]:
        """Every bridge's addresses: DHCP server and metadata, router interfaces; on the
        external bridge the routers' gateways and the floating IPs of this host's ports
        (a floating IP answers where its server runs)."""
        found: dict[str, set[str]] = {n.bridge: set() for n in topology.networks}
        bridge = {n.id: n.bridge for n in topology.networks}
        prefix = {s.id: s.prefixlen for n in topology.networks for s in n.subnets}
        for network in topology.networks:
            for subnet_id, ip in network.dhcp_ips:
                if ":" not in ip and subnet_id in prefix:
                    found[network.bridge].add(f"{ip}/{prefix[subnet_id]}")
            if network.dhcp_ips and not network.external:
                found[network.bridge].add(f"{firewall.METADATA_ADDRESS}/32")
        for router in topology.routers:
            for network_id, cidr, ip in router.interfaces:
                if network_id in bridge:
                    found[bridge[network_id]].add(f"{ip}/{cidr.split('/')[1]}")
            if router.gateway is not None and router.gateway[0] in bridge:
                network_id, cidr, ip = router.gateway
                found[bridge[network_id]].add(f"{ip}/{cidr.split('/')[1]}")
        elsewhere = {p.id for p in topology.ports if not p.serves_on(host)}
        for fip in topology.floating_ips:
            if fip.network_id in bridge and fip.fixed_ip and fip.port_id not in elsewhere:
                found[bridge[fip.network_id]].add(f"{fip.address}/32")
        return found

    def _forget_connections(self, ports: set[str], ruleset: firewall.Ruleset) -> None:
        """Drop the tracked connections of ports whose rules shrank: their next packet
        is judged by the rules as they are now (Neutron deletes conntrack entries too)."""
        for port_id in sorted(ports):
            for ip in ruleset.addresses.get(port_id, ()):
                for flag in ("-s", "-d", "-r", "-q"):
                    with contextlib.suppress(ToolError):
                        self.ns.run("conntrack", ["-D", flag, ip], package=CONNTRACK_PACKAGE)

    def _sync_dhcp(self, topology: Topology) -> None:
        dhcp_root = self.run_dir / "dhcp"
        serving = set()
        for network in topology.networks:
            if network.external or not network.dhcp_ips or not network.admin_up:
                continue
            if not any(s.enable_dhcp for s in network.subnets):
                continue
            serving.add(network.id)
            Dnsmasq(self.ns, dhcp_root, network.id).sync(
                network, topology.ports_on(network.id),
                tuple(self.settings.network.dnsmasq_dns_servers), host=self.host)
        for folder in dhcp_root.iterdir() if dhcp_root.is_dir() else ():
            if folder.is_dir() and folder.name not in serving:
                Dnsmasq(self.ns, dhcp_root, folder.name).remove()

    def _sync_metadata(self, topology: Topology) -> None:
        listeners = self._metadata()
        if listeners is None or self._resolve is None:
            return
        wanted = {n.id: n.bridge for n in topology.networks
                  if not n.external and n.dhcp_ips and n.admin_up}
        for network_id in set(self._listening) - set(wanted):
            listeners.close_network(network_id)
            del self._listening[network_id]
        for network_id, bridge in wanted.items():
            if self._listening.get(network_id) == bridge:
                continue
            sock = self.ns.call(partial(_metadata_socket, bridge))
            listeners.open_network(network_id, sock, partial(self._resolve, network_id))
            self._listening[network_id] = bridge

    def _sync_proxy(self) -> None:
        settings = self.settings.network
        if not settings.package_proxy:
            self.proxy.stop()
            return
        mirrors = list(settings.package_proxy_mirrors) or host_mirrors()
        self.proxy.ensure(port=settings.package_proxy_port,
                          max_rate=settings.package_proxy_max_rate, mirrors=mirrors)

    # -- the end -------------------------------------------------------------------

    def teardown(self) -> None:
        """Remove everything: dnsmasq, the proxy, pasta, the namespace, the uplink."""
        listeners = self._metadata()
        for network_id in list(self._listening):
            if listeners is not None:
                listeners.close_network(network_id)
        self._listening.clear()
        dhcp_root = self.run_dir / "dhcp"
        for folder in dhcp_root.iterdir() if dhcp_root.is_dir() else ():
            if folder.is_dir():
                Dnsmasq(self.ns, dhcp_root, folder.name).remove()
        self.proxy.stop()
        self.egress.stop()
        self.ns.delete()
        self.uplink.remove()
        shutil.rmtree(self.run_dir, ignore_errors=True)


def check_tools(settings: Settings) -> None:
    """ToolMissing, naming the Debian package, for the first program the driver lacks."""
    needed = [("dnsmasq", DNSMASQ_PACKAGE), ("nft", firewall.NFT_PACKAGE),
              ("conntrack", CONNTRACK_PACKAGE)]
    if settings.network.package_proxy or settings.compute.allow_guest_outbound:
        needed.append(("pasta", "passt"))
    if settings.network.package_proxy:
        needed.append(("apt-cacher-ng", "apt-cacher-ng"))
    for program, package in needed:
        require(program, package)


def _metadata_socket(bridge: str) -> socket.socket:
    """A listener on 169.254.169.254:80 that hears only `bridge` (made inside the namespace)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, bridge.encode())
        sock.bind((firewall.METADATA_ADDRESS, METADATA_PORT))
        sock.listen(256)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock
