"""A server's NICs: the ports compute makes or takes at create, binds at spawn, frees at delete.

What Nova's network API does with Neutron, in one place:
- `allocate_for_server`: `networks` of POST /servers (a list, `auto` or `none`) ->
  ports in request order: `{"uuid": net, "fixed_ip": ip}` makes a port on that network
  (device_owner `compute:nova`, device_id the server, dns_name its hostname, the
  requested security groups); `{"port": id}` takes a free port (kept, not deleted, when
  the server goes); `auto` (and no `networks` before 2.37) uses the project's one
  network, or gives the project its default network on first use. Nova's errors and
  codes: 400 for a network or port not found, 409 `NetworkAmbiguous`, `PortInUse`.
- `bind_server_ports(runtime, server_id, host) -> tuple[Nic, ...]`: at spawn (and every
  power-on), the server's ports in NIC order, bound to `host` (binding:host_id, what the
  network driver plumbs taps for); each `Nic` has the port id, network id, MAC, MTU, tap
  name and fixed IPs (with their subnet's CIDR, gateway, DNS and routes).
- `release_server_ports(session, server_id)`: at delete.
- `nics_of(session, server_ids)`: for `addresses` and the metadata service.
"""

from __future__ import annotations

import ipaddress
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.config import NetworkSettings
from kumo.errors import BadRequest, Conflict, Forbidden, KumoError
from kumo.network import autoalloc, ipam, ports
from kumo.network.models import (
    DEVICE_OWNER_COMPUTE,
    DEVICE_OWNER_DHCP,
    FloatingIP,
    IPAllocation,
    Network,
    Port,
    Subnet,
    VirtualInterface,
)
from kumo.network.networks import usable, visible
from kumo.network.topology import tap_name
from kumo.runtime import Runtime


@dataclass(frozen=True)
class FixedIP:
    subnet_id: str
    ip_address: str
    cidr: str
    gateway_ip: str | None
    dns_nameservers: tuple[str, ...] = ()
    host_routes: tuple[tuple[str, str], ...] = ()  # (destination, nexthop)
    dhcp_server: str | None = None  # the network's DHCP port address on this subnet

    @property
    def netmask(self) -> str:
        return str(ipaddress.IPv4Network(self.cidr).netmask)


@dataclass(frozen=True)
class Nic:
    """One NIC of a server: its port, in the order the guest sees its NICs."""

    port_id: str
    network_id: str
    network_name: str
    mac: str
    mtu: int
    fixed_ips: tuple[FixedIP, ...] = ()
    floating_ips: tuple[tuple[str, str], ...] = ()  # (fixed ip, floating ip)
    host_id: str = ""  # binding:host_id: the host that built its tap, if any

    @property
    def tap(self) -> str:
        return tap_name(self.port_id)


@dataclass
class NicRequest:
    network_id: str | None = None
    port_id: str | None = None
    fixed_ip: str | None = None
    tag: str | None = None


def parse_requested(networks: Any, auto_default: bool) -> list[NicRequest] | str:
    """Nova's `networks`: "auto", "none", or a list of NicRequest (400 on bad shapes)."""
    if networks is None:
        return "auto" if auto_default else "none"
    if networks in ("auto", "none"):
        return str(networks)
    if not isinstance(networks, list):
        raise BadRequest("Invalid input for field/attribute networks")
    requests: list[NicRequest] = []
    for entry in networks:
        if not isinstance(entry, dict) or set(entry) - {"uuid", "port", "fixed_ip", "tag"}:
            raise BadRequest("Invalid input for field/attribute networks: each entry takes "
                             "uuid, port, fixed_ip and tag")
        port_id, fixed_ip = entry.get("port"), entry.get("fixed_ip")
        if port_id:
            if any(r.port_id == port_id for r in requests):
                raise BadRequest(f"Port ID '{port_id}' was specified twice: you cannot attach "
                                 "a port multiple times.")
            if fixed_ip is not None:
                raise BadRequest(f"Specified Fixed IP '{fixed_ip}' cannot be used with port "
                                 f"'{port_id}': the two cannot be specified together.")
            requests.append(NicRequest(port_id=str(port_id), tag=entry.get("tag")))
            continue
        net_id = entry.get("uuid")
        if not isinstance(net_id, str) or not _uuid_like(net_id):
            raise BadRequest(f"Bad networks format: network uuid is not in proper format "
                             f"({net_id})")
        if fixed_ip is not None:
            try:
                address = ipaddress.ip_address(str(fixed_ip))
            except ValueError:
                raise BadRequest(f"Invalid fixed IP address ({fixed_ip})") from None
            if address.version != 4:
                raise BadRequest(f"Invalid fixed IP address ({fixed_ip}): {ipam.IPV4_ONLY}")
        requests.append(NicRequest(network_id=net_id, fixed_ip=fixed_ip, tag=entry.get("tag")))
    return requests


def _uuid_like(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True


def available_networks(session: Session, context: RequestContext) -> list[Network]:
    """Networks a server lands on when none is named: the project's own and shared ones.

    Nova also counts the project's external networks; kumo leaves them out, since the
    admin project owns the external network and its servers would always be ambiguous.
    """
    nets = session.scalars(select(Network).where(Network.admin_state_up.is_(True))
                           .order_by(Network.created_at, Network.id))
    return [n for n in nets if not n.external
            and (n.project_id == context.project_id or n.shared)]


def _network_for(session: Session, context: RequestContext, network_id: str) -> Network:
    network = session.get(Network, network_id)
    if network is None or not visible(context, network):
        raise BadRequest(f"Network {network_id} could not be found.")
    if network.external and not network.shared and not context.is_admin:
        raise Forbidden(f"It is not allowed to create an interface on external network "
                        f"{network_id}")
    if not usable(context, network):
        raise BadRequest(f"Network {network_id} could not be found.")
    if session.scalar(select(Subnet.id).where(Subnet.network_id == network_id)) is None:
        raise BadRequest(f"Network {network_id} requires a subnet in order to boot instances "
                         "on.")
    return network


def allocate_for_server(session: Session, context: RequestContext, server_id: str,
                        hostname: str, requested: list[NicRequest] | str,
                        group_ids: list[str], groups_explicit: bool,
                        settings: NetworkSettings) -> list[Port]:
    """Make or take the server's ports, in NIC order (see the module docstring)."""
    if requested == "none":
        return []
    if isinstance(requested, str):
        nets = available_networks(session, context)
        if len(nets) > 1:
            raise Conflict("Multiple possible networks found, use a Network ID to be more "
                           "specific.")
        network_id = nets[0].id if nets else autoalloc.ensure_topology(
            session, context, context.project_id, settings)
        requested = [NicRequest(network_id=network_id)]
    made: list[Port] = []
    try:
        for position, request in enumerate(requested):
            if request.port_id is not None:
                port = _take_port(session, context, server_id, hostname, request.port_id)
                preserve = True
            else:
                assert request.network_id is not None
                network = _network_for(session, context, request.network_id)
                port = _make_port(session, context, network, server_id, hostname,
                                  request.fixed_ip, group_ids, groups_explicit)
                preserve = False
            session.add(VirtualInterface(server_id=server_id, port_id=port.id,
                                         position=position, preserve_on_delete=preserve,
                                         tag=request.tag))
            session.flush()
            made.append(port)
    except NoFixedIps:
        # The server is kept (in ERROR, with this fault), so undo its ports here
        # rather than by rolling the whole request back.
        release_server_ports(session, server_id)
        for port in session.scalars(select(Port).where(Port.device_id == server_id)):
            ports.remove_port(session, port)
        raise
    return made


def _take_port(session: Session, context: RequestContext, server_id: str, hostname: str,
               port_id: str) -> Port:
    port = session.get(Port, port_id)
    if port is None or not ports.visible(context, port, session.get(Network, port.network_id)):
        raise BadRequest(f"Port id {port_id} could not be found.")
    if port.device_id or port.device_owner:
        raise Conflict(f"Port {port_id} is still in use.")
    if not ports.allocations(session, port.id):
        raise BadRequest(f"Port {port_id} requires a FixedIP in order to be used.")
    port.device_id, port.device_owner = server_id, DEVICE_OWNER_COMPUTE
    port.dns_name = port.dns_name or hostname
    return port


def _make_port(session: Session, context: RequestContext, network: Network, server_id: str,
               hostname: str, fixed_ip: str | None, group_ids: list[str],
               groups_explicit: bool) -> Port:
    if fixed_ip is not None:
        holder = session.scalar(select(Port).join(IPAllocation).where(
            IPAllocation.network_id == network.id, IPAllocation.ip_address == fixed_ip))
        if holder is not None:
            raise BadRequest(f"Fixed IP address {fixed_ip} is already in use on instance "
                             f"{holder.device_id}.")
    if groups_explicit and not network.port_security_enabled:
        raise BadRequest("Network requires port_security_enabled and subnet associated in "
                         "order to apply security groups.")
    port = ports.new_port(session, network, context.project_id, device_id=server_id,
                          device_owner=DEVICE_OWNER_COMPUTE, dns_name=hostname)
    try:
        if fixed_ip is None:
            ports.allocate_default(session, port)
        else:
            wanted = ports.requested_ips(session, context, network,
                                         [{"ip_address": fixed_ip}], "create_port")
            for subnet, ip in wanted:
                ipam.allocate(session, port, subnet, ip)
    except KumoError as exc:
        if getattr(exc, "neutron_type", "") == "IpAddressGenerationFailure":
            raise NoFixedIps(network.id) from None
        raise BadRequest(exc.message) from None
    session.flush()
    if network.port_security_enabled:
        ports.set_groups(session, context, port, group_ids or None, has_ip=True)
    return port


class NoFixedIps(Conflict):
    """A network with no free address: the server goes to ERROR with this fault (Nova's)."""

    def __init__(self, network_id: str) -> None:
        super().__init__(f"No fixed IP addresses available for network: {network_id}")


def _nics(session: Session, links: list[VirtualInterface]) -> list[Nic]:
    port_ids = [link.port_id for link in links]
    if not port_ids:
        return []
    found = {p.id: p for p in session.scalars(select(Port).where(Port.id.in_(port_ids)))}
    nets = {n.id: n for n in session.scalars(select(Network).where(
        Network.id.in_({p.network_id for p in found.values()})))}
    allocs: dict[str, list[IPAllocation]] = defaultdict(list)
    for alloc in session.scalars(select(IPAllocation).where(
            IPAllocation.port_id.in_(port_ids)).order_by(IPAllocation.id)):
        allocs[alloc.port_id].append(alloc)
    subnets = {s.id: s for s in session.scalars(select(Subnet).where(
        Subnet.network_id.in_(list(nets))))}
    dhcp: dict[str, str] = {}
    for alloc in session.scalars(select(IPAllocation).join(Port).where(
            Port.device_owner == DEVICE_OWNER_DHCP, IPAllocation.network_id.in_(list(nets)))):
        dhcp[alloc.subnet_id] = alloc.ip_address
    floating: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for fip in session.scalars(select(FloatingIP).where(
            FloatingIP.fixed_port_id.in_(port_ids)).order_by(FloatingIP.created_at)):
        if fip.fixed_port_id and fip.fixed_ip_address:
            floating[fip.fixed_port_id].append((fip.fixed_ip_address, fip.floating_ip_address))
    nics = []
    for link in links:
        port = found.get(link.port_id)
        if port is None:
            continue
        network = nets[port.network_id]
        fixed = []
        for alloc in allocs[port.id]:
            subnet = subnets[alloc.subnet_id]
            fixed.append(FixedIP(
                subnet_id=subnet.id, ip_address=alloc.ip_address, cidr=subnet.cidr,
                gateway_ip=subnet.gateway_ip, dns_nameservers=tuple(subnet.dns_nameservers),
                host_routes=tuple((r["destination"], r["nexthop"]) for r in subnet.host_routes),
                dhcp_server=dhcp.get(subnet.id) if subnet.enable_dhcp else None))
        nics.append(Nic(port_id=port.id, network_id=network.id, network_name=network.name,
                        mac=port.mac_address, mtu=network.mtu, fixed_ips=tuple(fixed),
                        floating_ips=tuple(floating[port.id]), host_id=port.host_id))
    return nics


def nics_of(session: Session, server_ids: list[str]) -> dict[str, list[Nic]]:
    """Each server's NICs in order (servers without ports get none)."""
    links: dict[str, list[VirtualInterface]] = defaultdict(list)
    if not server_ids:
        return {}
    for link in session.scalars(select(VirtualInterface).where(
            VirtualInterface.server_id.in_(server_ids)).order_by(VirtualInterface.position)):
        links[link.server_id].append(link)
    return {server_id: _nics(session, links[server_id]) for server_id in server_ids}


def server_nics(session: Session, server_id: str) -> list[Nic]:
    return nics_of(session, [server_id])[server_id]


def bind_server_ports(runtime: Runtime, server_id: str, host: str) -> tuple[Nic, ...]:
    """Bind the server's ports to `host` and return its NICs in order (see module doc).

    The caller has the plumbing follow (the agent's `plug` applies the topology at once,
    since QEMU needs the taps before it starts).
    """
    from kumo.db.engine import session_scope

    with session_scope(runtime.sessions) as session:
        links = list(session.scalars(select(VirtualInterface).where(
            VirtualInterface.server_id == server_id).order_by(VirtualInterface.position)))
        for link in links:
            port = session.get(Port, link.port_id)
            if port is not None and port.host_id != host:
                port.host_id = host
                port.revision_number += 1
        session.flush()
        return tuple(_nics(session, links))


def release_server_ports(session: Session, server_id: str) -> None:
    """At server delete: ports compute made go; ports the user passed are unbound."""
    for link in list(session.scalars(select(VirtualInterface).where(
            VirtualInterface.server_id == server_id))):
        port = session.get(Port, link.port_id)
        session.delete(link)
        session.flush()
        if port is None:
            continue
        if link.preserve_on_delete:
            port.device_id = port.device_owner = port.host_id = port.dns_name = ""
            port.status = "DOWN"
            port.revision_number += 1
        else:
            ports.remove_port(session, port)
    session.flush()


def server_group_ids(session: Session, server_id: str) -> list[str] | None:
    """The security groups of the server's ports (None when it has no ports)."""
    port_ids = list(session.scalars(select(VirtualInterface.port_id).where(
        VirtualInterface.server_id == server_id)))
    if not port_ids:
        return None
    groups: dict[str, None] = {}
    for port_id in port_ids:
        for group_id in ports.groups_of(session, port_id):
            groups[group_id] = None
    return list(groups)


def set_server_group(session: Session, context: RequestContext, server_id: str,
                     group_id: str, add: bool) -> None:
    """Nova's add/removeSecurityGroup: the group on (or off) each of the server's ports
    that has port security."""
    for port_id in session.scalars(select(VirtualInterface.port_id).where(
            VirtualInterface.server_id == server_id)):
        port = session.get(Port, port_id)
        if port is None or not port.port_security_enabled:
            continue
        groups = ports.groups_of(session, port.id)
        wanted = [*groups, group_id] if add and group_id not in groups else [
            g for g in groups if g != group_id or add]
        if wanted != groups:
            ports.set_groups(session, context, port, wanted,
                             has_ip=bool(ports.allocations(session, port.id)))
            port.revision_number += 1


def notify(runtime: Runtime) -> None:
    """Tell the network agent the topology changed (when one runs in this process)."""
    agent = runtime.services.get("network")
    if agent is not None and hasattr(agent, "changed"):
        agent.changed()


def user_mode(runtime: Runtime, server_nics: Sequence[Nic] = ()) -> bool:
    """The server's guest uses QEMU user networking.

    Not when this process builds real networks (a namespace here), nor when a host has
    bound one of its ports (an agent built its taps: an API process builds nothing
    itself); under user networking ports are never bound."""
    agent = runtime.services.get("network")
    if getattr(agent, "namespace", None) is not None:
        return False
    return not any(nic.host_id for nic in server_nics)
