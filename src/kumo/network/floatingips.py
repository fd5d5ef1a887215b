"""Floating IPs: an address on an external network, pointed at one port's fixed IP.

Neutron's rules: the address comes from the external network (its own port,
device_owner `network:floatingip`); only admins pick it. It can point at a port of the
same project whose fixed IP's subnet is attached to a router with a gateway on that
external network (404 `ExternalGatewayForFloatingIPNotFound` otherwise, which is how
`openstack server add floating ip` tells ports apart), and a fixed IP has at most one
floating IP per external network.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.network import ipam, ports
from kumo.network.common import (
    admin_only,
    get_owned,
    list_owned,
    owner_of,
    require_default,
    resource_body,
    text,
)
from kumo.network.errors import (
    NeutronBadRequest,
    bad,
    conflict,
    floating_ip_not_found,
    not_found,
    port_not_found,
)
from kumo.network.models import (
    DEVICE_OWNER_FLOATING_IP,
    DEVICE_OWNER_ROUTER_INTERFACE,
    FloatingIP,
    IPAllocation,
    Network,
    Port,
    Router,
    Subnet,
)
from kumo.network.networks import get_network

ATTRIBUTES = frozenset({
    "floating_network_id", "floating_ip_address", "subnet_id", "port_id", "fixed_ip_address",
    "description", "project_id", "tenant_id", "dns_name", "dns_domain", "qos_policy_id",
})


def get_floating_ip(session: Session, context: RequestContext, fip_id: str) -> FloatingIP:
    return get_owned(session, context, FloatingIP, fip_id, floating_ip_not_found)


def list_floating_ips(session: Session, context: RequestContext) -> list[FloatingIP]:
    return list_owned(session, context, FloatingIP)


def _unsupported(spec: dict[str, Any]) -> None:
    require_default(spec, "qos_policy_id", (None,), "kumo has no QoS policies")
    require_default(spec, "dns_name", (None, ""), "kumo has no external DNS service")
    require_default(spec, "dns_domain", (None, ""), "kumo has no external DNS service")


def create_floating_ip(session: Session, context: RequestContext, body: Any) -> FloatingIP:
    """POST /floatingips: a free address (or the one asked for, admins only)."""
    context.require_writer()
    spec = resource_body(body, "floatingip", ATTRIBUTES)
    _unsupported(spec)
    admin_only(context, "create_floatingip", spec, ("floating_ip_address",))
    network_id = spec.get("floating_network_id")
    if not isinstance(network_id, str):
        raise NeutronBadRequest("Failed to parse request. Required attribute "
                                "'floating_network_id' not specified")
    network = get_network(session, context, network_id)
    if not network.external:
        raise bad("floatingip", f"Network {network.id} is not a valid external network")
    if session.scalar(select(Subnet.id).where(Subnet.network_id == network.id)) is None:
        raise bad("floatingip", f"Network {network.id} does not contain any IPv4 subnet")
    fip = FloatingIP(project_id=owner_of(context, spec, "create_floatingip"),
                     description=text(spec, "description"), floating_network_id=network.id,
                     floating_ip_address="", floating_port_id="")
    port = ports.new_port(session, network, "", device_owner=DEVICE_OWNER_FLOATING_IP,
                          port_security_enabled=False)
    address = spec.get("floating_ip_address")
    subnet_id = spec.get("subnet_id")
    if address is None and subnet_id is None:
        ports.allocate_default(session, port)
    else:
        wanted = {k: v for k, v in (("subnet_id", subnet_id), ("ip_address", address)) if v}
        for subnet, ip in ports.requested_ips(session, context, network, [wanted],
                                              "create_floatingip"):
            ipam.allocate(session, port, subnet, ip)
    session.flush()
    fip.floating_ip_address = ports.allocations(session, port.id)[0].ip_address
    fip.floating_port_id = port.id
    session.add(fip)
    session.flush()
    port.device_id = fip.id
    if spec.get("port_id"):
        associate(session, context, fip, str(spec["port_id"]), spec.get("fixed_ip_address"))
    elif spec.get("fixed_ip_address"):
        raise bad("floatingip", "fixed_ip_address cannot be specified without a port_id")
    session.flush()
    return fip


def update_floating_ip(session: Session, context: RequestContext, fip_id: str,
                       body: Any) -> FloatingIP:
    """PUT /floatingips/{id}: point it at a port (`port_id`), or at nothing (null)."""
    context.require_writer()
    fip = get_floating_ip(session, context, fip_id)
    spec = resource_body(body, "floatingip", {"port_id", "fixed_ip_address", "description"})
    if "description" in spec:
        fip.description = text(spec, "description")
    if "port_id" in spec:
        if spec["port_id"]:
            associate(session, context, fip, str(spec["port_id"]), spec.get("fixed_ip_address"))
        else:
            disassociate(fip)
    elif spec.get("fixed_ip_address"):
        if fip.fixed_port_id is None:
            raise bad("floatingip", "fixed_ip_address cannot be specified without a port_id")
        associate(session, context, fip, fip.fixed_port_id, spec["fixed_ip_address"])
    fip.revision_number += 1
    session.flush()
    return fip


def disassociate(fip: FloatingIP) -> None:
    fip.fixed_port_id = fip.fixed_ip_address = fip.router_id = None
    fip.status = "DOWN"


def associate(session: Session, context: RequestContext, fip: FloatingIP, port_id: str,
              fixed_ip: Any) -> None:
    """Point `fip` at a port's fixed IP, through the router that reaches it."""
    port = session.get(Port, port_id)
    if port is None or not ports.visible(context, port, session.get(Network, port.network_id)):
        raise port_not_found(port_id)
    if port.project_id != fip.project_id and not context.is_admin:
        raise bad("floatingip", f"Cannot process floating IP association with Port {port.id}, "
                                "since that port is owned by a different project")
    if port.device_owner.startswith("network:"):
        raise bad("floatingip", f"Port {port.id} is unable to be assigned a floating IP")
    held = ports.allocations(session, port.id)
    if fixed_ip is not None:
        address = str(ipam.parse_ip(fixed_ip, "fixed_ip_address"))
        chosen = next((a for a in held if a.ip_address == address), None)
        if chosen is None:
            raise bad("floatingip", f"Port {port.id} does not have fixed ip {address}")
    else:
        if not held:
            raise bad("floatingip", f"Cannot add floating IP to port {port.id} that has no "
                                    "fixed IPv4 addresses")
        if len(held) > 1:
            raise bad("floatingip", f"Port {port.id} has multiple fixed IPv4 addresses.  Must "
                                    "provide a specific IPv4 address when assigning a floating "
                                    "IP")
        chosen = held[0]
    router = router_for(session, chosen, fip.floating_network_id, port.id)
    other = session.scalar(select(FloatingIP).where(
        FloatingIP.fixed_port_id == port.id, FloatingIP.fixed_ip_address == chosen.ip_address,
        FloatingIP.floating_network_id == fip.floating_network_id, FloatingIP.id != fip.id))
    if other is not None:
        raise conflict("FloatingIPPortAlreadyAssociated",
                       f"Cannot associate floating IP {fip.floating_ip_address} ({fip.id}) "
                       f"with port {port.id} using fixed IP {chosen.ip_address}, as that fixed "
                       f"IP already has a floating IP on external network "
                       f"{fip.floating_network_id}.")
    fip.fixed_port_id, fip.fixed_ip_address = port.id, chosen.ip_address
    fip.router_id, fip.status = router.id, "ACTIVE"


def router_for(session: Session, allocation: IPAllocation, external_network_id: str,
               port_id: str) -> Router:
    """The router with an interface on the fixed IP's subnet and a gateway on the network."""
    router_ids = session.scalars(select(Port.device_id).join(IPAllocation).where(
        Port.device_owner == DEVICE_OWNER_ROUTER_INTERFACE,
        IPAllocation.subnet_id == allocation.subnet_id))
    for router_id in router_ids:
        router = session.get(Router, router_id)
        gateway = session.get(Port, router.gw_port_id) if router and router.gw_port_id else None
        if router is not None and gateway is not None and \
                gateway.network_id == external_network_id:
            return router
    raise not_found("ExternalGatewayForFloatingIPNotFound",
                    f"External network {external_network_id} is not reachable from subnet "
                    f"{allocation.subnet_id}.  Therefore, cannot associate Port {port_id} with "
                    "a Floating IP.")


def delete_floating_ip(session: Session, context: RequestContext, fip_id: str) -> None:
    """DELETE /floatingips/{id}: the address goes back to the external network."""
    context.require_writer()
    fip = get_floating_ip(session, context, fip_id)
    port = session.get(Port, fip.floating_port_id)
    session.delete(fip)
    session.flush()
    if port is not None:
        session.delete(port)
        session.flush()
