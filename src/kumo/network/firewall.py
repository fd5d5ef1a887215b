"""nftables for kumo's namespace: anti-spoofing, security groups, routing policy and NAT.

`render()` turns a topology into one nft script, `apply()` loads it in one atomic
transaction. Three tables, each replaced whole on every pass:

- `bridge kumo`: anti-spoofing on every guest tap (layer 2, stateless). A frame from
  a guest must carry its port's MAC; ARP and IPv4 its port's addresses (DHCP's
  0.0.0.0 discover excepted); no DHCP server replies, no IPv6 (kumo's networks are
  IPv4), no other ethertypes. Towards a guest only its own addresses, broadcast and
  multicast pass. This is what makes a source address trustworthy for the metadata
  service and for the security groups below.
- `inet kumo`: security groups, stateful. This kernel has no bridge-family
  conntrack, so bridged IPv4 goes through the inet hooks (br_netfilter, enabled per
  namespace); the hooks see the bridge, not the tap, so each packet is dispatched to
  its ports' chains by address: the source's egress chain, then the destination's
  ingress chain. That is exact because anti-spoofing pins addresses to taps and
  subnets never overlap in kumo's cloud. Which bridges may reach each other at all
  (the same network; networks on one router; floating IPs; outbound when allowed)
  is checked first. Guests may reach the namespace itself only on their own
  network's service addresses (DHCP and DNS, the metadata address, the proxy).
- `ip kumo_nat`: floating IPs (DNAT in, SNAT out), hairpin NAT for a guest that
  reaches another guest's floating IP, and router SNAT when outbound traffic is allowed.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field

from kumo.network.netns import Namespace
from kumo.network.topology import (
    VXLAN_PREFIX,
    GroupPlan,
    NetworkPlan,
    PortPlan,
    RulePlan,
    Topology,
)

METADATA_ADDRESS = "169.254.169.254"
# Protocols whose rules may name ports (`th dport` reads the transport header).
_PORT_PROTOCOLS = {6, 17, 33, 132, 136}
_ICMP = 1
INSIDE_MARK = "0x6b756d6f"  # "kumo": a connection a guest started
NFT_PACKAGE = "nftables"


@dataclass(frozen=True)
class Context:
    """What the rules need to know beyond the topology: this host and its policy."""

    host: str
    external_bridge: str | None = None  # the external network's bridge, if any
    egress_link: str | None = None  # the namespace's way out (pasta), if any
    allow_outbound: bool = False  # [DEFAULT] allow_guest_outbound


@dataclass
class Ruleset:
    """The rendered script, and per port what it grants (to see when a grant shrinks)."""

    script: str
    grants: dict[str, frozenset[str]] = field(default_factory=dict)  # port id -> rule lines
    addresses: dict[str, tuple[str, ...]] = field(default_factory=dict)  # port id -> IPs


def chain_id(port_id: str) -> str:
    return port_id[:13]


def _quote(name: str) -> str:
    return f'"{name}"'


def _elements(items: Iterable[str]) -> str:
    return ", ".join(items)


def _set_block(name: str, kind: str, items: list[str], flags: str = "") -> list[str]:
    lines = [f"  set {name} {{", f"    type {kind};"]
    if flags:
        lines.append(f"    flags {flags};")
    if items:
        lines.append(f"    elements = {{ {_elements(items)} }};")
    lines.append("  }")
    return lines


def _map_block(name: str, kind: str, items: list[str]) -> list[str]:
    lines = [f"  map {name} {{", f"    type {kind};"]
    if items:
        lines.append(f"    elements = {{ {_elements(items)} }};")
    lines.append("  }")
    return lines


def protected_ports(topology: Topology, host: str) -> list[PortPlan]:
    """Guest ports of this host that port security covers."""
    return [p for p in topology.guest_ports(host) if p.port_security and p.addresses]


def render(topology: Topology, context: Context) -> Ruleset:
    """The whole nft script for `topology` on `context.host`."""
    ports = protected_ports(topology, context.host)
    grants: dict[str, frozenset[str]] = {}
    lines: list[str] = []
    services = _service_addresses(topology)
    lines += _bridge_table(topology, ports, services)
    inet, grants = _inet_table(topology, ports, context, services)
    lines += inet
    lines += _nat_table(topology, context)
    return Ruleset(script="\n".join(lines) + "\n", grants=grants,
                   addresses={p.id: p.addresses for p in ports})


# --- layer 2: anti-spoofing ------------------------------------------------------

def _bridge_table(topology: Topology, ports: list[PortPlan],
                  services: list[tuple[str, str]]) -> list[str]:
    lines = ["table bridge kumo {}", "delete table bridge kumo", "table bridge kumo {"]
    from_guest = [f"{_quote(p.tap)} : jump from-{chain_id(p.id)}" for p in ports]
    to_guest = [f"{_quote(p.tap)} : jump to-{chain_id(p.id)}" for p in ports]
    lines += _map_block("from_guest", "ifname : verdict", from_guest)
    lines += _map_block("to_guest", "ifname : verdict", to_guest)
    # Every host answers a network's service addresses (DHCP, metadata, router) itself:
    # ARP for them and DHCP never cross a VXLAN tunnel, so a guest reaches its own
    # host's (another host's dnsmasq would refuse a lease it does not hold).
    here = sorted({ip for _bridge, ip in services})
    lines += _set_block("answered_here", "ipv4_addr", here)
    lines += [
        "  chain prerouting {",
        "    type filter hook prerouting priority -200; policy accept;",
        *_kept_off_tunnels("iifname"),
        "    iifname vmap @from_guest",
        "  }",
        "  chain postrouting {",
        "    type filter hook postrouting priority 200; policy accept;",
        *_kept_off_tunnels("oifname"),
        "    oifname vmap @to_guest",
        "  }",
    ]
    for port in ports:
        ips = _elements(port.addresses)
        network = topology.network(port.network_id)
        broadcasts = _broadcasts(network) if network else []
        cid = chain_id(port.id)
        lines += [
            f"  chain from-{cid} {{",
            f"    ether saddr != {port.mac} drop",
            f"    arp saddr ether != {port.mac} drop",
            f"    arp saddr ip != {{ 0.0.0.0, {ips} }} drop",
            "    ether type arp accept",
            "    ip saddr 0.0.0.0 udp sport 68 udp dport 67 accept",
            f"    ip saddr != {{ {ips} }} drop",
            "    udp sport 67 drop",
            "    ether type ip accept",
            "    drop",
            "  }",
            f"  chain to-{cid} {{",
            "    ether type arp accept",
            f"    ip daddr {{ {_elements([*port.addresses, *broadcasts])}, 224.0.0.0/4 }} accept",
            "    drop",
            "  }",
        ]
    lines.append("}")
    return lines


def _kept_off_tunnels(match: str) -> list[str]:
    """ARP for the addresses every host answers itself, and DHCP, on a VXLAN device
    (`match`: iifname in, oifname out)."""
    tunnel = f"{match} {_quote(VXLAN_PREFIX + '*')}"
    return [f"    {tunnel} arp operation request arp daddr ip @answered_here drop",
            f"    {tunnel} arp operation reply arp saddr ip @answered_here drop",
            f"    {tunnel} udp dport {{ 67, 68 }} drop"]


def _broadcasts(network: NetworkPlan) -> list[str]:
    found = ["255.255.255.255"]
    for subnet in network.subnets:
        net = ipaddress.ip_network(subnet.cidr)
        if net.version == 4 and net.prefixlen < 31:
            found.append(str(net.broadcast_address))
    return found


# --- layer 3: security groups and routing policy ------------------------------------

def _inet_table(topology: Topology, ports: list[PortPlan], context: Context,
                services: list[tuple[str, str]]
                ) -> tuple[list[str], dict[str, frozenset[str]]]:
    groups = {g.id: g for g in topology.groups}
    guest_bridges = sorted({n.bridge for n in topology.networks if not n.external})
    links = _links(topology)
    outbound = _outbound_links(topology, context) if context.allow_outbound else []
    remote_groups = sorted({r.remote_group_id for p in ports for g in p.security_groups
                            if g in groups for r in groups[g].rules if r.remote_group_id})

    lines = ["table inet kumo {}", "delete table inet kumo", "table inet kumo {"]
    lines += _set_block("guest_bridges", "ifname", [_quote(b) for b in guest_bridges])
    lines += _set_block("links", "ifname . ifname",
                        [f"{_quote(a)} . {_quote(b)}" for a, b in links])
    lines += _set_block("outbound", "ifname . ifname",
                        [f"{_quote(a)} . {_quote(b)}" for a, b in outbound])
    lines += _set_block("services", "ifname . ipv4_addr",
                        [f"{_quote(b)} . {ip}" for b, ip in services])
    for group_id in remote_groups:
        members = list(groups[group_id].members) if group_id in groups else []
        lines += _set_block(f"g-{chain_id(group_id)}", "ipv4_addr", members)
    stateless = {p.id for p in ports if _stateless(p, groups)}
    lines += _set_block("stateless", "ipv4_addr",
                        sorted({ip for p in ports if p.id in stateless for ip in p.addresses}))
    egress_map = [f"{ip} : jump e-{chain_id(p.id)}" for p in ports for ip in p.addresses]
    ingress_map = [f"{ip} : jump i-{chain_id(p.id)}" for p in ports for ip in p.addresses]
    lines += _map_block("egress", "ipv4_addr : verdict", egress_map)
    lines += _map_block("ingress", "ipv4_addr : verdict", ingress_map)
    lines += [
        "  chain forward {",
        "    type filter hook forward priority filter; policy drop;",
        # replies pass on conntrack's word, unless a stateless port is at either end:
        # its chain then judges every packet (the port's stateful peer still accepts
        # replies in its own chain)
        "    ip saddr != @stateless ip daddr != @stateless ct state established,related accept",
        "    ip saddr != @stateless ip daddr != @stateless ct state invalid drop",
        "    iifname . oifname @links goto admit",
        "    ct status dnat goto admit",
        "    iifname . oifname @outbound goto admit",
        "  }",
        "  chain admit {",
        "    ip saddr vmap @egress",
        "    ip daddr vmap @ingress",
        "    accept",
        "  }",
        "  chain input {",
        "    type filter hook input priority filter; policy accept;",
        "    iifname \"lo\" accept",
        "    ct state established,related accept",
        "    ct state invalid drop",
        "    iifname @guest_bridges jump from_guests",
    ]
    if context.external_bridge:
        lines.append(f"    iifname {_quote(context.external_bridge)} jump from_outside")
    if context.egress_link:
        lines.append(f"    iifname {_quote(context.egress_link)} drop")
    lines += [
        "  }",
        "  chain from_guests {",
        "    udp sport 68 udp dport 67 accept",
        "    ip saddr vmap @egress",
        "    iifname . ip daddr @services accept",
        "    drop",
        "  }",
        "  chain from_outside {",
        "    icmp type echo-request accept",
        "    drop",
        "  }",
    ]
    grants: dict[str, frozenset[str]] = {}
    for port in ports:
        egress, ingress = _port_rules(port, groups)
        if port.id not in stateless:
            egress.insert(0, "ct state established,related accept")
            ingress.insert(0, "ct state established,related accept")
        cid = chain_id(port.id)
        lines += [f"  chain e-{cid} {{", *(f"    {r}" for r in egress), "    drop", "  }"]
        lines += [f"  chain i-{cid} {{", *(f"    {r}" for r in ingress), "    drop", "  }"]
        expanded = {f"e {r}" for r in egress} | {f"i {r}" for r in ingress}
        for group_id in remote_groups:
            members = list(groups[group_id].members) if group_id in groups else []
            token = f"@g-{chain_id(group_id)}"
            if any(token in r for r in expanded):
                expanded |= {f"{token} has {m}" for m in members}
        grants[port.id] = frozenset(expanded)
    lines.append("}")
    return lines, grants


def _links(topology: Topology) -> list[tuple[str, str]]:
    """Bridge pairs traffic may be forwarded between: within a network, and between the
    internal networks of one router."""
    pairs = {(n.bridge, n.bridge) for n in topology.networks if n.admin_up}
    for router in topology.routers:
        if not router.admin_up:
            continue
        bridges = sorted({b.bridge for b in topology.networks
                          if any(b.id == i[0] for i in router.interfaces) and b.admin_up})
        pairs |= {(a, b) for a in bridges for b in bridges}
    return sorted(pairs)


def _outbound_links(topology: Topology, context: Context) -> list[tuple[str, str]]:
    """(internal bridge, way out) for routers with a gateway and SNAT on."""
    exits = [x for x in (context.external_bridge, context.egress_link) if x]
    pairs: set[tuple[str, str]] = set()
    for router in topology.routers:
        if not (router.admin_up and router.gateway and router.enable_snat):
            continue
        for network_id, _cidr, _ip in router.interfaces:
            network = topology.network(network_id)
            if network is not None:
                pairs |= {(network.bridge, out) for out in exits}
    return sorted(pairs)


def _service_addresses(topology: Topology) -> list[tuple[str, str]]:
    """(bridge, address) a guest on that bridge may reach in the namespace itself."""
    found: set[tuple[str, str]] = set()
    for network in topology.networks:
        if network.external:
            continue
        if network.dhcp_ips:
            found.add((network.bridge, METADATA_ADDRESS))
        found |= {(network.bridge, ip) for _subnet, ip in network.dhcp_ips if ":" not in ip}
    for router in topology.routers:
        addresses = [ip for _net, _cidr, ip in router.interfaces]
        for network_id, _cidr, _ip in router.interfaces:
            attached = topology.network(network_id)
            if attached is not None:
                found |= {(attached.bridge, ip) for ip in addresses}
    return sorted(found)


def _stateless(port: PortPlan, groups: dict[str, GroupPlan]) -> bool:
    """A port whose groups are all `stateful: false` (Neutron lets no port mix the two):
    no reply passes unless a rule of the port allows it."""
    mine = [groups[g] for g in port.security_groups if g in groups]
    return bool(mine) and not any(g.stateful for g in mine)


def _port_rules(port: PortPlan, groups: dict[str, GroupPlan]) -> tuple[list[str], list[str]]:
    egress: list[str] = []
    ingress: list[str] = []
    seen: set[tuple[str, str]] = set()
    for group_id in port.security_groups:
        group = groups.get(group_id)
        if group is None:
            continue
        for rule in group.rules:
            line = _rule(rule)
            if line is None or (rule.direction, line) in seen:
                continue
            seen.add((rule.direction, line))
            (egress if rule.direction == "egress" else ingress).append(line)
    return egress, ingress


def _rule(rule: RulePlan) -> str | None:
    """One security-group rule as an nft statement ending in `return` (allowed)."""
    if rule.ethertype != "IPv4":
        return None  # kumo's networks carry IPv4 only
    parts: list[str] = []
    peer = "saddr" if rule.direction == "ingress" else "daddr"
    if rule.remote_ip_prefix:
        net = ipaddress.ip_network(rule.remote_ip_prefix, strict=False)
        if net.version != 4:
            return None
        if net.prefixlen:
            parts.append(f"ip {peer} {net}")
    elif rule.remote_group_id:
        parts.append(f"ip {peer} @g-{chain_id(rule.remote_group_id)}")
    if rule.protocol is not None:
        if rule.protocol == _ICMP:
            parts.append("meta l4proto icmp")
            if rule.port_min is not None:
                parts.append(f"icmp type {rule.port_min}")
                if rule.port_max is not None:
                    parts.append(f"icmp code {rule.port_max}")
        else:
            parts.append(f"meta l4proto {rule.protocol}")
            if rule.protocol in _PORT_PROTOCOLS and rule.port_min is not None:
                high = rule.port_max if rule.port_max is not None else rule.port_min
                ports = str(rule.port_min) if high == rule.port_min else f"{rule.port_min}-{high}"
                parts.append(f"th dport {ports}")
    parts.append("return")
    return " ".join(parts)


# --- NAT: floating IPs and router SNAT ---------------------------------------------

def _nat_table(topology: Topology, context: Context) -> list[str]:
    fips = [f for f in topology.floating_ips if f.fixed_ip]
    dnat = [f"{f.address} : {f.fixed_ip}" for f in fips]
    snat = [f"{f.fixed_ip} : {f.address}" for f in fips]
    guest_bridges = sorted({n.bridge for n in topology.networks if not n.external})
    lines = ["table ip kumo_nat {}", "delete table ip kumo_nat", "table ip kumo_nat {"]
    lines += _map_block("fip_dnat", "ipv4_addr : ipv4_addr", dnat)
    lines += _map_block("fip_snat", "ipv4_addr : ipv4_addr", snat)
    lines += _set_block("guest_bridges", "ifname", [_quote(b) for b in guest_bridges])
    lines += [
        "  chain prerouting {",
        "    type nat hook prerouting priority dstnat; policy accept;",
        # Connections started inside the cloud (this chain sees their first packet).
        f"    iifname @guest_bridges ct mark set {INSIDE_MARK}",
        "    dnat to ip daddr map @fip_dnat",
        "  }",
        "  chain output {",
        "    type nat hook output priority -100; policy accept;",
        "    dnat to ip daddr map @fip_dnat",
        "  }",
        "  chain postrouting {",
        "    type nat hook postrouting priority srcnat; policy accept;",
        # A guest with a floating IP leaves the cloud as that address.
        "    oifname != @guest_bridges snat to ip saddr map @fip_snat",
        # Hairpin: a guest that reached another guest's floating IP from inside the
        # cloud gets the namespace's address as source, so the reply comes back here.
        f"    ct mark {INSIDE_MARK} ct status dnat oifname @guest_bridges masquerade",
    ]
    if context.allow_outbound:
        for router in topology.routers:
            if not (router.gateway and router.enable_snat and router.admin_up):
                continue
            sources = _elements(cidr for _net, cidr, _ip in router.interfaces)
            if not sources:
                continue
            if context.external_bridge:
                lines.append(f"    ip saddr {{ {sources} }} oifname "
                             f"{_quote(context.external_bridge)} snat to {router.gateway[2]}")
            if context.egress_link:
                lines.append(f"    ip saddr {{ {sources} }} oifname "
                             f"{_quote(context.egress_link)} masquerade")
    lines += ["  }", "}"]
    return lines


def apply(ns: Namespace, ruleset: Ruleset) -> None:
    """Load the script in one transaction (all of it or nothing)."""
    ns.run("nft", ["-f", "-"], package=NFT_PACKAGE, input=ruleset.script.encode())


def shrunk(before: Ruleset | None, after: Ruleset) -> set[str]:
    """Ports whose grants lost something (their tracked connections must be re-checked)."""
    if before is None:
        return set()
    return {port for port, old in before.grants.items()
            if port in after.grants and not old <= after.grants[port]}
