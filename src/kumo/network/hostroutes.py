"""The host's own routes, as guest subnets must leave them: a subnet that overlaps one
would cut the host off from that network (kumo routes its networks through the host).

The routes come from `uplink.host_routes()` (`ip -j -4 route show table all`, the
default route left out). kumo's own uplink route, to the external network's subnet,
is not a conflict: the caller passes the external subnets as `kumo_own`.
"""

from __future__ import annotations

import ipaddress

from kumo.network.uplink import host_routes

Route = tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, str]


def routes(kumo_own: list[ipaddress.IPv4Network]) -> list[Route]:
    """The host's IPv4 routes but kumo's own (those inside the external subnets)."""
    return [(dst, dev) for dst, dev in host_routes()
            if dst.version == 4 and not any(
                dst.subnet_of(own) for own in kumo_own)]


def overlapping(cidr: ipaddress.IPv4Network, kumo_own: list[ipaddress.IPv4Network]) -> str | None:
    """`DEST dev DEVICE` of the first host route `cidr` overlaps, if any."""
    for dst, dev in routes(kumo_own):
        if dst.overlaps(cidr):
            return f"{dst} dev {dev}"
    return None
