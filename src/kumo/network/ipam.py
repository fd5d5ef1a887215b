"""Addresses: CIDRs, allocation pools, fixed IPs and MACs, with Neutron's rules and words.

kumo's networks are IPv4 only, and no two subnets in the cloud overlap (Neutron's
`allow_overlapping_ips = False`): every network is routed in the one namespace, so an
address names one port cloud-wide. Ports get the lowest free address of their
subnet's pools (Neutron picks among the free ones; lowest-first is the predictable
choice for a cloud this size). MACs are Neutron's `fa:16:3e:xx:xx:xx`, random, retried
on collision.
"""

from __future__ import annotations

import ipaddress
import secrets
from collections.abc import Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.network.errors import (
    InvalidInput,
    bad_request,
    conflict,
    ip_generation_failure,
    ip_in_use,
    mac_in_use,
)
from kumo.network.models import IPAllocation, Port, Subnet

BASE_MAC = "fa:16:3e"
MAC_RETRIES = 16
IPV4_ONLY = ("kumo's networks are IPv4 only (every network is routed in kumo's one "
             "network namespace); use an IPv4 CIDR such as 10.1.0.0/24")
Pool = dict[str, str]  # {"start": ip, "end": ip}


def parse_cidr(value: Any) -> ipaddress.IPv4Network:
    """A subnet's CIDR as Neutron validates it (400 otherwise; IPv6 refused)."""
    if not isinstance(value, str):
        raise InvalidInput(f"'{value}' is not a valid IP subnet")
    try:
        network = ipaddress.ip_network(value.strip(), strict=False)
    except ValueError:
        raise InvalidInput(f"'{value}' is not a valid IP subnet") from None
    if network.version != 4:
        raise bad_request("BadRequest", IPV4_ONLY)
    assert isinstance(network, ipaddress.IPv4Network)
    if str(network) != value.strip() and "/" in value:
        raise InvalidInput(f"'{value}' isn't a recognized IP subnet cidr, '{network}' is "
                           "recommended")
    if network.prefixlen == 0:
        raise InvalidInput("0 is not allowed as CIDR prefix length")
    return network


def parse_ip(value: Any, what: str = "ip_address") -> ipaddress.IPv4Address:
    """One IPv4 address (400 with Neutron's words otherwise)."""
    try:
        address = ipaddress.ip_address(str(value).strip())
    except ValueError:
        raise InvalidInput(f"'{value}' is not a valid IP address") from None
    if address.version != 4:
        raise bad_request("BadRequest", f"{what} {value}: {IPV4_ONLY}")
    assert isinstance(address, ipaddress.IPv4Address)
    return address


def usable_range(cidr: ipaddress.IPv4Network) -> tuple[ipaddress.IPv4Address,
                                                       ipaddress.IPv4Address]:
    """First and last host address (no network or broadcast address below /31)."""
    if cidr.prefixlen <= 30:
        return cidr.network_address + 1, cidr.broadcast_address - 1
    return cidr.network_address, cidr.broadcast_address


def default_pools(cidr: ipaddress.IPv4Network, gateway: str | None) -> list[Pool]:
    """The whole usable range minus the gateway (neutron's ipam `generate_pools`)."""
    first, last = usable_range(cidr)
    pools = []
    if gateway is None or not first <= ipaddress.IPv4Address(gateway) <= last:
        pools.append((first, last))
    else:
        gw = ipaddress.IPv4Address(gateway)
        if first < gw:
            pools.append((first, gw - 1))
        if gw < last:
            pools.append((gw + 1, last))
    return [{"start": str(a), "end": str(b)} for a, b in pools]


def check_pools(value: Any, cidr: ipaddress.IPv4Network, gateway: str | None) -> list[Pool]:
    """Requested allocation pools: inside the CIDR, not overlapping, clear of the gateway."""
    if not isinstance(value, list):
        raise InvalidInput(f"Invalid data format for IP pool: '{value}'")
    first, last = usable_range(cidr)
    ranges: list[tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]] = []
    for pool in value:
        if not isinstance(pool, dict) or set(pool) != {"start", "end"}:
            raise InvalidInput(f"Invalid data format for IP pool: '{pool}'")
        start, end = parse_ip(pool["start"], "start"), parse_ip(pool["end"], "end")
        shown = f"{start}-{end}"
        if start > end:
            raise bad_request("InvalidAllocationPool",
                              f"The allocation pool {shown} is not valid.")
        if start < first or end > last:
            raise bad_request("OutOfBoundsAllocationPool", f"The allocation pool {shown} "
                                                           f"spans beyond the subnet cidr {cidr}.")
        ranges.append((start, end))
    for index, (a_start, a_end) in enumerate(ranges):
        for b_start, b_end in ranges[index + 1:]:
            if a_start <= b_end and b_start <= a_end:
                raise conflict("OverlappingAllocationPools",
                               f"Found overlapping allocation pools: {a_start}-{a_end} "
                               f"{b_start}-{b_end} for subnet {cidr}.")
    if gateway is not None:
        gw = ipaddress.IPv4Address(gateway)
        for start, end in ranges:
            if start <= gw <= end:
                raise conflict("GatewayConflictWithAllocationPools",
                               f"Gateway ip {gw} conflicts with allocation pool {start}-{end}.")
    return [{"start": str(a), "end": str(b)} for a, b in sorted(ranges)]


def pool_addresses(pools: list[Pool]) -> Iterator[ipaddress.IPv4Address]:
    for pool in pools:
        address = ipaddress.IPv4Address(pool["start"])
        end = ipaddress.IPv4Address(pool["end"])
        while address <= end:
            yield address
            address += 1


def used_addresses(session: Session, subnet_id: str) -> set[str]:
    return set(session.scalars(select(IPAllocation.ip_address).where(
        IPAllocation.subnet_id == subnet_id)))


def free_address(session: Session, subnet: Subnet) -> str | None:
    """The lowest address of the subnet's pools no port holds, or None when full."""
    used = used_addresses(session, subnet.id)
    for address in pool_addresses(subnet.allocation_pools or []):
        if str(address) not in used:
            return str(address)
    return None


def valid_for_subnet(subnet: Subnet, ip: ipaddress.IPv4Address) -> bool:
    """Inside the CIDR and neither its network nor broadcast address (neutron's ipam)."""
    cidr = ipaddress.IPv4Network(subnet.cidr)
    first, last = usable_range(cidr)
    return first <= ip <= last


def allocate(session: Session, port: Port, subnet: Subnet, ip: str | None = None) -> str:
    """Give `port` an address on `subnet`: `ip` when asked (and free), else the lowest free."""
    if ip is None:
        chosen = free_address(session, subnet)
        if chosen is None:
            raise ip_generation_failure(subnet.network_id)
    else:
        address = parse_ip(ip)
        if not valid_for_subnet(subnet, address):
            raise bad_request("InvalidIpForSubnet", f"IP address {ip} is not a valid IP for "
                                                    "the specified subnet.")
        chosen = str(address)
        taken = session.scalar(select(IPAllocation).where(
            IPAllocation.network_id == subnet.network_id, IPAllocation.ip_address == chosen))
        if taken is not None:
            raise ip_in_use(subnet.network_id, chosen)
    session.add(IPAllocation(port_id=port.id, subnet_id=subnet.id,
                             network_id=subnet.network_id, ip_address=chosen))
    return chosen


def random_mac(session: Session) -> str:
    """A fresh `fa:16:3e:xx:xx:xx` no port has (Neutron's base_mac, retried on collision)."""
    for _ in range(MAC_RETRIES):
        mac = BASE_MAC + "".join(f":{b:02x}" for b in secrets.token_bytes(3))
        if session.scalar(select(Port.id).where(Port.mac_address == mac)) is None:
            return mac
    raise conflict("MacAddressGenerationFailure",
                   "Unable to generate unique mac on network.")


def check_mac(session: Session, value: Any, network_id: str) -> str:
    """A MAC the caller asked for: a unicast MAC no other port has."""
    text = str(value).strip().lower().replace("-", ":")
    parts = text.split(":")
    if len(parts) != 6 or not all(len(p) == 2 and all(c in "0123456789abcdef" for c in p)
                                  for p in parts):
        raise InvalidInput(f"'{value}' is not a valid MAC address")
    if int(parts[0], 16) & 1 or text == "00:00:00:00:00:00":
        raise InvalidInput(f"'{value}' is not a valid MAC address")
    if session.scalar(select(Port.id).where(Port.mac_address == text)) is not None:
        raise mac_in_use(network_id, text)
    return text
