"""Subnets: CIDR, gateway, pools, DNS and host routes, and the network's DHCP port.

On top of Neutron's checks kumo refuses a subnet that overlaps any other subnet of the
cloud (Neutron's `allow_overlapping_ips = False`: all networks are routed in one
namespace) or one of the host's own routes (the host would lose that network). A
DHCP-enabled subnet gives the network's DHCP port (device_owner `network:dhcp`) an
address, the first free one as Neutron's DHCP agent takes it; dnsmasq serves from it.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.network import hostroutes, ipam
from kumo.network.common import (
    boolean,
    owner_of,
    require_default,
    require_owner,
    resource_body,
    text,
)
from kumo.network.errors import (
    InvalidInput,
    NeutronBadRequest,
    bad_request,
    conflict,
    subnet_not_found,
)
from kumo.network.models import (
    DEVICE_OWNER_DHCP,
    DEVICE_OWNER_ROUTER_GATEWAY,
    DEVICE_OWNER_ROUTER_INTERFACE,
    IPAllocation,
    Network,
    Port,
    Subnet,
)
from kumo.network.networks import owned_network

MAX_DNS_NAMESERVERS = 5  # Neutron's max_dns_nameservers
MAX_HOST_ROUTES = 20  # Neutron's max_subnet_host_routes
ATTRIBUTES = frozenset({
    "name", "description", "network_id", "ip_version", "cidr", "gateway_ip", "enable_dhcp",
    "allocation_pools", "dns_nameservers", "host_routes", "project_id", "tenant_id",
    "subnetpool_id", "use_default_subnet_pool", "prefixlen", "ipv6_ra_mode",
    "ipv6_address_mode", "service_types", "segment_id", "dns_publish_fixed_ip",
})
READ_ONLY = ("network_id", "ip_version", "cidr", "subnetpool_id", "use_default_subnet_pool",
             "prefixlen", "project_id", "tenant_id", "segment_id")
_SPECIAL = (
    (ipaddress.IPv4Network("127.0.0.0/8"), "it is the loopback range"),
    (ipaddress.IPv4Network("169.254.0.0/16"), "it is link-local: guests reach the metadata "
                                              "service at 169.254.169.254"),
    (ipaddress.IPv4Network("224.0.0.0/4"), "it is multicast"),
    (ipaddress.IPv4Network("240.0.0.0/4"), "it is reserved"),
    (ipaddress.IPv4Network("0.0.0.0/8"), "it contains 0.0.0.0"),
)


def visible(context: RequestContext, subnet: Subnet, network: Network) -> bool:
    """Neutron's get_subnet: admins, owners (of it or its network), shared or external."""
    return (context.is_admin or context.project_id in (subnet.project_id, network.project_id)
            or network.shared or network.external)


def get_subnet(session: Session, context: RequestContext, subnet_id: str) -> Subnet:
    subnet = session.get(Subnet, subnet_id)
    network = session.get(Network, subnet.network_id) if subnet else None
    if subnet is None or network is None or not visible(context, subnet, network):
        raise subnet_not_found(subnet_id)
    return subnet


def list_subnets(session: Session, context: RequestContext) -> list[Subnet]:
    networks = {n.id: n for n in session.scalars(select(Network))}
    stmt = select(Subnet).order_by(Subnet.created_at, Subnet.id)
    return [s for s in session.scalars(stmt) if visible(context, s, networks[s.network_id])]


def _gateway(spec: dict[str, Any], cidr: ipaddress.IPv4Network) -> str | None:
    if "gateway_ip" not in spec:
        return str(ipam.usable_range(cidr)[0])
    if spec["gateway_ip"] in (None, "", "none"):
        return None
    gateway = ipam.parse_ip(spec["gateway_ip"], "gateway_ip")
    if gateway not in cidr:
        raise InvalidInput(f"Gateway ip {gateway} is not in subnet cidr {cidr}")
    if cidr.prefixlen <= 30 and gateway in (cidr.network_address, cidr.broadcast_address):
        raise InvalidInput("Gateway is not valid on subnet")
    return str(gateway)


def _nameservers(value: Any) -> list[str]:
    if not isinstance(value, list):
        raise InvalidInput(f"Invalid data format for nameserver: '{value}'")
    if len(value) > MAX_DNS_NAMESERVERS:
        raise bad_request("DNSNameServersExhausted",
                          f"Unable to complete operation for new subnet. The number of DNS "
                          f"nameservers exceeds the limit {MAX_DNS_NAMESERVERS}.")
    servers: list[str] = []
    for entry in value:
        address = str(ipam.parse_ip(entry, "dns_nameserver"))
        if address in servers:
            raise InvalidInput(f"Duplicate nameserver '{address}'")
        servers.append(address)
    return servers


def _host_routes(value: Any) -> list[dict[str, str]]:
    return parse_routes(value, bad_request(
        "HostRoutesExhausted", f"Unable to complete operation for new subnet. The number of "
                               f"host routes exceeds the limit {MAX_HOST_ROUTES}."),
        MAX_HOST_ROUTES)


def parse_routes(value: Any, too_many: Exception, limit: int) -> list[dict[str, str]]:
    """[{destination: CIDR, nexthop: IP}], at most `limit`, no duplicates."""
    if not isinstance(value, list):
        raise InvalidInput(f"Invalid data format for routes: '{value}'")
    if len(value) > limit:
        raise too_many
    routes: list[dict[str, str]] = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != {"destination", "nexthop"}:
            raise InvalidInput(f"Invalid data format for route: '{entry}'")
        route = {"destination": str(route_cidr(entry["destination"])),
                 "nexthop": str(ipam.parse_ip(entry["nexthop"], "nexthop"))}
        if route in routes:
            raise InvalidInput(f"Duplicate route '{entry}'")
        routes.append(route)
    return routes


def route_cidr(value: Any) -> ipaddress.IPv4Network:
    """A route's destination: an IPv4 CIDR (host bits are cleared, as routes use them)."""
    try:
        network = ipaddress.ip_network(str(value), strict=False)
    except ValueError:
        raise InvalidInput(f"'{value}' is not a valid IP subnet") from None
    if network.version != 4:
        raise bad_request("BadRequest", f"destination {value}: {ipam.IPV4_ONLY}")
    assert isinstance(network, ipaddress.IPv4Network)
    return network


def check_cidr(session: Session, cidr: ipaddress.IPv4Network, network_id: str,
               enable_dhcp: bool, *, host_routes: bool = True) -> None:
    """Neutron's CIDR checks, then kumo's: no overlap with any subnet or host route."""
    if enable_dhcp and cidr.prefixlen > 30:
        raise InvalidInput("Subnet has a prefix length that is incompatible with DHCP service "
                           "enabled")
    for special, why in _SPECIAL:
        if cidr.overlaps(special):
            raise InvalidInput(f"Requested subnet with cidr: {cidr} is not usable for a "
                               f"network: {why} ({special})")
    for other in session.scalars(select(Subnet.cidr)):
        if ipaddress.ip_network(other).overlaps(cidr):
            raise InvalidInput(f"Requested subnet with cidr: {cidr} for network: {network_id} "
                               "overlaps with another subnet")
    if host_routes:
        external = [ipaddress.IPv4Network(c) for c in session.scalars(
            select(Subnet.cidr).join(Network, Network.id == Subnet.network_id)
            .where(Network.external.is_(True)))]
        route = hostroutes.overlapping(cidr, external)
        if route is not None:
            raise InvalidInput(
                f"Requested subnet with cidr: {cidr} for network: {network_id} overlaps with "
                f"this host's route {route}: kumo routes its networks through the host, which "
                "would lose its own route to that network; choose another CIDR")


def create_subnet(session: Session, context: RequestContext, body: Any, *,
                  check_host_routes: bool = True) -> Subnet:
    """POST /subnets (and the DHCP port's address when DHCP is on)."""
    context.require_writer()
    spec = resource_body(body, "subnet", ATTRIBUTES)
    network_id = spec.get("network_id")
    if not isinstance(network_id, str):
        raise NeutronBadRequest("Failed to parse request. Required attribute 'network_id' "
                                "not specified")
    network = owned_network(session, context, network_id, "create_subnet")
    version = str(spec.get("ip_version", 4))
    if version == "6" or spec.get("ipv6_ra_mode") or spec.get("ipv6_address_mode"):
        raise bad_request("BadRequest", ipam.IPV4_ONLY)
    if version != "4":
        raise InvalidInput(f"{spec.get('ip_version')} is not in [4, 6]")
    if spec.get("subnetpool_id") or spec.get("use_default_subnet_pool"):
        raise NeutronBadRequest("kumo has no subnet pools; give the subnet a cidr "
                                "(--subnet-range)")
    require_default(spec, "service_types", (None, []), "kumo's subnets serve every port")
    require_default(spec, "segment_id", (None,), "kumo's networks have one segment")
    if "cidr" not in spec:
        raise NeutronBadRequest("Bad subnets request: a cidr must be specified in the absence "
                                "of a subnet pool.")
    cidr = ipam.parse_cidr(spec["cidr"])
    enable_dhcp = boolean(spec, "enable_dhcp", True)
    check_cidr(session, cidr, network.id, enable_dhcp, host_routes=check_host_routes)
    gateway = _gateway(spec, cidr)
    pools = (ipam.check_pools(spec["allocation_pools"], cidr, gateway)
             if spec.get("allocation_pools") is not None else ipam.default_pools(cidr, gateway))
    subnet = Subnet(
        network_id=network.id, name=text(spec, "name"), description=text(spec, "description"),
        project_id=owner_of(context, spec, "create_subnet"), ip_version=4, cidr=str(cidr),
        gateway_ip=gateway, enable_dhcp=enable_dhcp, allocation_pools=pools,
        dns_nameservers=_nameservers(spec.get("dns_nameservers") or []),
        host_routes=_host_routes(spec.get("host_routes") or []),
    )
    session.add(subnet)
    session.flush()
    sync_dhcp_port(session, network)
    return subnet


def update_subnet(session: Session, context: RequestContext, subnet_id: str,
                  body: Any) -> Subnet:
    """PUT /subnets/{id}: names, gateway, pools, DNS, routes, DHCP on/off."""
    context.require_writer()
    subnet = get_subnet(session, context, subnet_id)
    network = owned_network(session, context, subnet.network_id, "update_subnet")
    spec = resource_body(body, "subnet", ATTRIBUTES)
    for key in READ_ONLY:
        if key in spec:
            raise NeutronBadRequest(f"Cannot update read-only attribute {key}")
    cidr = ipaddress.IPv4Network(subnet.cidr)
    for key in ("name", "description"):
        if key in spec:
            setattr(subnet, key, text(spec, key))
    if "gateway_ip" in spec:
        gateway = _gateway(spec, cidr)
        if gateway != subnet.gateway_ip:
            _check_gateway_free(session, subnet)
        subnet.gateway_ip = gateway
    if "allocation_pools" in spec:
        subnet.allocation_pools = ipam.check_pools(spec["allocation_pools"], cidr,
                                                   subnet.gateway_ip)
    elif "gateway_ip" in spec:
        ipam.check_pools(subnet.allocation_pools, cidr, subnet.gateway_ip)
    if "dns_nameservers" in spec:
        subnet.dns_nameservers = _nameservers(spec["dns_nameservers"] or [])
    if "host_routes" in spec:
        subnet.host_routes = _host_routes(spec["host_routes"] or [])
    if "enable_dhcp" in spec:
        enable = boolean(spec, "enable_dhcp", subnet.enable_dhcp)
        if enable and not subnet.enable_dhcp and cidr.prefixlen > 30:
            raise InvalidInput("Subnet has a prefix length that is incompatible with DHCP "
                               "service enabled")
        subnet.enable_dhcp = enable
    subnet.revision_number += 1
    session.flush()
    sync_dhcp_port(session, network)
    return subnet


def _check_gateway_free(session: Session, subnet: Subnet) -> None:
    """The gateway of a subnet a router is attached to cannot move (GatewayIpInUse)."""
    if subnet.gateway_ip is None:
        return
    port_id = session.scalar(select(IPAllocation.port_id).join(Port).where(
        IPAllocation.subnet_id == subnet.id, IPAllocation.ip_address == subnet.gateway_ip,
        Port.device_owner.in_((DEVICE_OWNER_ROUTER_INTERFACE, DEVICE_OWNER_ROUTER_GATEWAY))))
    if port_id is not None:
        raise conflict("GatewayIpInUse", f"Current gateway ip {subnet.gateway_ip} already in "
                                         f"use by port {port_id}. Unable to update.")


def delete_subnet(session: Session, context: RequestContext, subnet_id: str) -> None:
    """DELETE /subnets/{id}: not while ports other than DHCP's hold addresses on it."""
    context.require_writer()
    subnet = get_subnet(session, context, subnet_id)
    network = session.get(Network, subnet.network_id)
    assert network is not None
    require_owner(context, "delete_subnet", subnet.project_id, network.project_id)
    users = session.scalar(select(IPAllocation.port_id).join(Port).where(
        IPAllocation.subnet_id == subnet.id, Port.device_owner != DEVICE_OWNER_DHCP))
    if users is not None:
        raise conflict("SubnetInUse", f"Unable to complete operation on subnet {subnet.id}: "
                                      "One or more ports have an IP allocation from this "
                                      "subnet.")
    session.delete(subnet)
    session.flush()
    sync_dhcp_port(session, network)


def dhcp_port(session: Session, network_id: str) -> Port | None:
    return session.scalar(select(Port).where(Port.network_id == network_id,
                                             Port.device_owner == DEVICE_OWNER_DHCP))


def sync_dhcp_port(session: Session, network: Network) -> None:
    """Give the network's DHCP port one address on each DHCP subnet (and no other).

    The port is made with the first DHCP subnet and removed with the last one.
    """
    dhcp_subnets = [s for s in session.scalars(select(Subnet).where(
        Subnet.network_id == network.id).order_by(Subnet.created_at, Subnet.id))
        if s.enable_dhcp]
    port = dhcp_port(session, network.id)
    if not dhcp_subnets:
        if port is not None:
            session.delete(port)
            session.flush()
        return
    if port is None:
        port = Port(network_id=network.id, project_id=network.project_id,
                    mac_address=ipam.random_mac(session), device_owner=DEVICE_OWNER_DHCP,
                    device_id=f"dhcp-{network.id}", status="ACTIVE",
                    port_security_enabled=False)
        session.add(port)
        session.flush()
    held = {a.subnet_id: a for a in session.scalars(select(IPAllocation).where(
        IPAllocation.port_id == port.id))}
    wanted = {s.id for s in dhcp_subnets}
    for subnet_id, allocation in held.items():
        if subnet_id not in wanted:
            session.delete(allocation)
    for subnet in dhcp_subnets:
        if subnet.id not in held:
            ipam.allocate(session, port, subnet)
    session.flush()


def subnet_of_network(session: Session, context: RequestContext, network: Network,
                      subnet_id: str) -> Subnet:
    """A subnet named in a port's fixed_ips: it must be on the port's network."""
    subnet = session.get(Subnet, subnet_id)
    if subnet is None:
        raise subnet_not_found(subnet_id)
    if subnet.network_id != network.id:
        raise InvalidInput(f"Failed to create port on network {network.id}, because fixed_ips "
                           f"included invalid subnet {subnet_id}")
    return subnet

