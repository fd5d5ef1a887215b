"""The whole network of the cloud, as plain values: what a driver makes true on a host.

`snapshot()` reads it in one transaction. Names of host devices follow Neutron's
Linux bridge agent, so an operator who knows Neutron finds them: `brq<network
id[:11]>` per network, `tap<port id[:11]>` per port, `vxlan-<VNI>` per network joined
to other hosts (15 characters at most, the kernel's limit).
"""

from __future__ import annotations

import ipaddress
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.agent.models import ComputeNode
from kumo.config import Settings
from kumo.network.models import (
    DEVICE_OWNER_DHCP,
    DEVICE_OWNER_ROUTER_GATEWAY,
    DEVICE_OWNER_ROUTER_INTERFACE,
    FloatingIP,
    IPAllocation,
    Network,
    Port,
    PortSecurityGroup,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
)

# IANA protocol numbers for the names Neutron accepts in rules.
PROTOCOL_NUMBERS = {
    "icmp": 1, "igmp": 2, "tcp": 6, "egp": 8, "udp": 17, "ipv6-encap": 41, "ipv6-route": 43,
    "ipv6-frag": 44, "gre": 47, "esp": 50, "ah": 51, "ipv6-icmp": 58, "icmpv6": 58,
    "ipv6-nonxt": 59, "ipv6-opts": 60, "ospf": 89, "pgm": 113, "ipip": 94, "sctp": 132,
    "udplite": 136, "dccp": 33, "vrrp": 112, "rsvp": 46,
}


def bridge_name(network_id: str) -> str:
    return "brq" + network_id[:11]


def tap_name(port_id: str) -> str:
    return "tap" + port_id[:11]


VXLAN_PREFIX = "vxlan-"


def vxlan_name(vni: int) -> str:
    """A tenant network's VXLAN device (Neutron's `vxlan-<segmentation id>`)."""
    return f"{VXLAN_PREFIX}{vni}"


@dataclass(frozen=True)
class SubnetPlan:
    id: str
    cidr: str
    gateway_ip: str | None
    enable_dhcp: bool
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[tuple[str, str], ...] = ()  # (destination, nexthop)

    @property
    def prefixlen(self) -> int:
        return ipaddress.ip_network(self.cidr).prefixlen


@dataclass(frozen=True)
class NetworkPlan:
    id: str
    vni: int
    mtu: int
    external: bool
    admin_up: bool
    subnets: tuple[SubnetPlan, ...] = ()
    # The network:dhcp port's MAC and addresses (subnet id -> ip): dnsmasq answers there,
    # and so does the metadata service (169.254.169.254 routed via that address).
    dhcp_mac: str | None = None
    dhcp_ips: tuple[tuple[str, str], ...] = ()

    @property
    def bridge(self) -> str:
        return bridge_name(self.id)


@dataclass(frozen=True)
class PortPlan:
    id: str
    network_id: str
    mac: str
    ips: tuple[tuple[str, str], ...]  # (subnet id, ip)
    device_owner: str
    device_id: str
    host_id: str
    dns_name: str = ""
    admin_up: bool = True
    port_security: bool = True
    security_groups: tuple[str, ...] = ()

    @property
    def tap(self) -> str:
        return tap_name(self.id)

    @property
    def addresses(self) -> tuple[str, ...]:
        return tuple(ip for _subnet, ip in self.ips)

    @property
    def is_compute(self) -> bool:
        return self.device_owner.startswith("compute:")

    def serves_on(self, host: str) -> bool:
        """Bound to `host`, or to no host yet: that host answers for it (its lease, its
        floating IP), not another one a network spans."""
        return self.host_id in ("", host)


@dataclass(frozen=True)
class RulePlan:
    id: str
    direction: str  # ingress | egress
    ethertype: str  # IPv4 | IPv6
    protocol: int | None  # IANA number, None for any
    port_min: int | None = None  # tcp/udp/sctp ports; for ICMP: type
    port_max: int | None = None  # for ICMP: code
    remote_ip_prefix: str | None = None
    remote_group_id: str | None = None


@dataclass(frozen=True)
class GroupPlan:
    id: str
    stateful: bool
    rules: tuple[RulePlan, ...] = ()
    members: tuple[str, ...] = ()  # IPv4 addresses of the ports in the group


@dataclass(frozen=True)
class RouterPlan:
    id: str
    admin_up: bool
    # (network id, subnet cidr, router's address there)
    interfaces: tuple[tuple[str, str, str], ...] = ()
    # (external network id, external subnet cidr, router's address there), if any
    gateway: tuple[str, str, str] | None = None
    enable_snat: bool = True
    routes: tuple[tuple[str, str], ...] = ()  # (destination, nexthop)


@dataclass(frozen=True)
class FloatingPlan:
    id: str
    address: str
    network_id: str  # the external network
    fixed_ip: str | None = None  # None: not associated
    port_id: str | None = None
    router_id: str | None = None


@dataclass(frozen=True)
class Topology:
    networks: tuple[NetworkPlan, ...] = ()
    ports: tuple[PortPlan, ...] = ()
    groups: tuple[GroupPlan, ...] = ()
    routers: tuple[RouterPlan, ...] = ()
    floating_ips: tuple[FloatingPlan, ...] = ()
    # (host, underlay address) of every registered compute host: VXLAN's other ends
    tunnels: tuple[tuple[str, str], ...] = ()

    def network(self, network_id: str) -> NetworkPlan | None:
        return next((n for n in self.networks if n.id == network_id), None)

    def ports_on(self, network_id: str) -> list[PortPlan]:
        return [p for p in self.ports if p.network_id == network_id]

    def guest_ports(self, host: str | None = None) -> list[PortPlan]:
        """Compute ports (with a tap), of one host when `host` is given."""
        return [p for p in self.ports if p.is_compute and p.host_id
                and (host is None or p.host_id == host)]


def protocol_number(protocol: str | None) -> int | None:
    """A rule's protocol as its IANA number (None, "any" and "" mean every protocol)."""
    if protocol in (None, "", "any"):
        return None
    if protocol.isdigit():
        return int(protocol)
    return PROTOCOL_NUMBERS[protocol.lower()]


def snapshot(session: Session, settings: Settings | None = None) -> Topology:
    """Read every network, port, group, router and floating IP in one transaction."""
    del settings  # reserved: per-host filtering lives in the drivers
    subnets: dict[str, list[Subnet]] = defaultdict(list)
    for subnet in session.scalars(select(Subnet).order_by(Subnet.created_at, Subnet.id)):
        subnets[subnet.network_id].append(subnet)
    cidr_of = {s.id: s.cidr for group in subnets.values() for s in group}
    ips: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for alloc in session.scalars(select(IPAllocation).order_by(IPAllocation.id)):
        ips[alloc.port_id].append((alloc.subnet_id, alloc.ip_address))
    port_groups: dict[str, list[str]] = defaultdict(list)
    for link in session.scalars(select(PortSecurityGroup)):
        port_groups[link.port_id].append(link.security_group_id)

    ports = list(session.scalars(select(Port).order_by(Port.created_at, Port.id)))
    dhcp = {p.network_id: p for p in ports if p.device_owner == DEVICE_OWNER_DHCP}
    networks = tuple(
        NetworkPlan(
            id=n.id, vni=n.vni, mtu=n.mtu, external=n.external, admin_up=n.admin_state_up,
            subnets=tuple(_subnet_plan(s) for s in subnets[n.id]),
            dhcp_mac=dhcp[n.id].mac_address if n.id in dhcp else None,
            dhcp_ips=tuple(ips[dhcp[n.id].id]) if n.id in dhcp else (),
        )
        for n in session.scalars(select(Network).order_by(Network.created_at, Network.id))
    )
    port_plans = tuple(
        PortPlan(
            id=p.id, network_id=p.network_id, mac=p.mac_address, ips=tuple(ips[p.id]),
            device_owner=p.device_owner, device_id=p.device_id, host_id=p.host_id,
            dns_name=p.dns_name, admin_up=p.admin_state_up,
            port_security=p.port_security_enabled,
            security_groups=tuple(sorted(port_groups[p.id])),
        )
        for p in ports
    )
    members: dict[str, list[str]] = defaultdict(list)
    for port in port_plans:
        for group_id in port.security_groups:
            members[group_id].extend(ip for ip in port.addresses if ":" not in ip)
    rules: dict[str, list[RulePlan]] = defaultdict(list)
    for rule in session.scalars(select(SecurityGroupRule).order_by(
            SecurityGroupRule.created_at, SecurityGroupRule.id)):
        rules[rule.security_group_id].append(RulePlan(
            id=rule.id, direction=rule.direction, ethertype=rule.ethertype,
            protocol=protocol_number(rule.protocol), port_min=rule.port_range_min,
            port_max=rule.port_range_max, remote_ip_prefix=rule.remote_ip_prefix,
            remote_group_id=rule.remote_group_id))
    groups = tuple(
        GroupPlan(id=g.id, stateful=g.stateful, rules=tuple(rules[g.id]),
                  members=tuple(sorted(set(members[g.id]))))
        for g in session.scalars(select(SecurityGroup).order_by(SecurityGroup.id))
    )
    return Topology(
        networks=networks, ports=port_plans, groups=groups,
        routers=_routers(session, ports, ips, cidr_of),
        floating_ips=tuple(
            FloatingPlan(id=f.id, address=f.floating_ip_address,
                         network_id=f.floating_network_id, fixed_ip=f.fixed_ip_address,
                         port_id=f.fixed_port_id, router_id=f.router_id)
            for f in session.scalars(select(FloatingIP).order_by(FloatingIP.id))
        ),
        tunnels=tuple((host, ip) for host, ip in session.execute(
            select(ComputeNode.host, ComputeNode.host_ip).order_by(ComputeNode.host))),
    )


def _subnet_plan(subnet: Subnet) -> SubnetPlan:
    return SubnetPlan(
        id=subnet.id, cidr=subnet.cidr, gateway_ip=subnet.gateway_ip,
        enable_dhcp=subnet.enable_dhcp, dns_nameservers=tuple(subnet.dns_nameservers or ()),
        host_routes=tuple((r["destination"], r["nexthop"]) for r in subnet.host_routes or ()),
    )


def _routers(session: Session, ports: list[Port], ips: dict[str, list[tuple[str, str]]],
             cidr_of: dict[str, str]) -> tuple[RouterPlan, ...]:
    interfaces: dict[str, list[tuple[str, str, str]]] = defaultdict(list)
    by_id = {p.id: p for p in ports}
    for port in ports:
        if port.device_owner == DEVICE_OWNER_ROUTER_INTERFACE:
            for subnet_id, ip in ips[port.id]:
                interfaces[port.device_id].append((port.network_id, cidr_of[subnet_id], ip))
    plans = []
    for router in session.scalars(select(Router).order_by(Router.created_at, Router.id)):
        gateway = None
        gw_port = by_id.get(router.gw_port_id or "")
        if gw_port is not None and gw_port.device_owner == DEVICE_OWNER_ROUTER_GATEWAY:
            v4 = [(s, ip) for s, ip in ips[gw_port.id] if ":" not in ip]
            if v4:
                gateway = (gw_port.network_id, cidr_of[v4[0][0]], v4[0][1])
        plans.append(RouterPlan(
            id=router.id, admin_up=router.admin_state_up,
            interfaces=tuple(interfaces[router.id]), gateway=gateway,
            enable_snat=router.enable_snat,
            routes=tuple((r["destination"], r["nexthop"]) for r in router.routes or ())))
    return tuple(plans)

