"""Routers: a gateway on an external network, interfaces on subnets, static routes.

Neutron's model: the gateway is a port on the external network (device_owner
`network:router_gateway`, project ''), each interface a port holding its subnet's
gateway address (`network:router_interface`, device_id the router). SNAT is on unless
said otherwise, and only admins say (Neutron's `enable_snat` policy); kumo's default is
`[network] enable_snat_by_default`, off, because guests reach the outside only when the
operator allows outbound NAT. A router with interfaces cannot be deleted (409
`RouterInUse`), nor an interface or gateway that floating IPs or routes need.
"""

from __future__ import annotations

import ipaddress
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.config import NetworkSettings
from kumo.network import ipam, ports
from kumo.network.common import (
    admin_only,
    boolean,
    get_owned,
    list_owned,
    owner_of,
    require_default,
    resource_body,
    text,
)
from kumo.network.errors import (
    InvalidInput,
    bad,
    bad_request,
    conflict,
    ip_in_use,
    not_found,
    router_not_found,
)
from kumo.network.models import (
    DEVICE_OWNER_ROUTER_GATEWAY,
    DEVICE_OWNER_ROUTER_INTERFACE,
    FloatingIP,
    IPAllocation,
    Network,
    Port,
    PortSecurityGroup,
    Router,
    Subnet,
)
from kumo.network.networks import get_network, usable
from kumo.network.subnets import get_subnet, parse_routes

MAX_ROUTES = 30  # Neutron's max_routes
ATTRIBUTES = frozenset({
    "name", "description", "admin_state_up", "external_gateway_info", "routes", "project_id",
    "tenant_id", "availability_zone_hints", "distributed", "ha", "flavor_id",
})
GATEWAY_KEYS = frozenset({"network_id", "enable_snat", "external_fixed_ips", "qos_policy_id"})


def get_router(session: Session, context: RequestContext, router_id: str) -> Router:
    return get_owned(session, context, Router, router_id, router_not_found)


def list_routers(session: Session, context: RequestContext) -> list[Router]:
    return list_owned(session, context, Router)


def interface_ports(session: Session, router_id: str) -> list[Port]:
    return list(session.scalars(select(Port).where(
        Port.device_id == router_id, Port.device_owner == DEVICE_OWNER_ROUTER_INTERFACE)
        .order_by(Port.created_at, Port.id)))


def gateway_port(session: Session, router: Router) -> Port | None:
    return session.get(Port, router.gw_port_id) if router.gw_port_id else None


def _unsupported(spec: dict[str, Any]) -> None:
    require_default(spec, "distributed", (None, False), "kumo's routers are centralized")
    require_default(spec, "ha", (None, False), "kumo's routers live on one host")
    require_default(spec, "flavor_id", (None,), "kumo has no router flavors")
    require_default(spec, "availability_zone_hints", (None, [], ["nova"]),
                    "kumo has one availability zone, nova")


def create_router(session: Session, context: RequestContext, body: Any,
                  settings: NetworkSettings) -> Router:
    """POST /routers."""
    context.require_writer()
    spec = resource_body(body, "router", ATTRIBUTES)
    _unsupported(spec)
    router = Router(name=text(spec, "name"), description=text(spec, "description"),
                    project_id=owner_of(context, spec, "create_router"),
                    admin_state_up=boolean(spec, "admin_state_up", True),
                    enable_snat=settings.enable_snat_by_default)
    session.add(router)
    session.flush()
    if spec.get("routes"):
        raise bad("router", "routes cannot be set at creation: the router has no interface "
                            "for their nexthops yet")
    if spec.get("external_gateway_info"):
        _update_gateway(session, context, router, spec["external_gateway_info"], settings,
                        "create_router")
    return router


def update_router(session: Session, context: RequestContext, router_id: str, body: Any,
                  settings: NetworkSettings) -> Router:
    """PUT /routers/{id}: names, state, gateway, routes."""
    context.require_writer()
    router = get_router(session, context, router_id)
    spec = resource_body(body, "router", ATTRIBUTES - {"project_id", "tenant_id"})
    _unsupported(spec)
    for key in ("name", "description"):
        if key in spec:
            setattr(router, key, text(spec, key))
    if "admin_state_up" in spec:
        router.admin_state_up = boolean(spec, "admin_state_up", router.admin_state_up)
    if "external_gateway_info" in spec:
        _update_gateway(session, context, router, spec["external_gateway_info"], settings,
                        "update_router")
    if "routes" in spec:
        router.routes = check_routes(session, router, spec["routes"] or [])
    router.revision_number += 1
    session.flush()
    return router


def _update_gateway(session: Session, context: RequestContext, router: Router, info: Any,
                    settings: NetworkSettings, action: str) -> None:
    if not info:
        clear_gateway(session, router)
        return
    if not isinstance(info, dict) or set(info) - GATEWAY_KEYS or "network_id" not in info:
        raise InvalidInput(f"Invalid data format for external_gateway_info: '{info}'")
    require_default(info, "qos_policy_id", (None,), "kumo has no QoS policies")
    admin_only(context, f"{action}:external_gateway_info", info,
               ("enable_snat", "external_fixed_ips"))
    network = get_network(session, context, str(info["network_id"]))
    if not network.external:
        raise bad("router", f"Network {network.id} is not an external network")
    current = gateway_port(session, router)
    snat = boolean(info, "enable_snat", settings.enable_snat_by_default
                   if current is None else router.enable_snat)
    wanted = info.get("external_fixed_ips")
    if current is not None and current.network_id == network.id and wanted is None:
        router.enable_snat = snat
        return
    if current is not None:
        clear_gateway(session, router)
    set_gateway(session, router, network, snat, wanted, context)


def set_gateway(session: Session, router: Router, network: Network, enable_snat: bool,
                fixed_ips: Any, context: RequestContext | None = None) -> Port:
    """Give the router a gateway port on the external `network`."""
    port = ports.new_port(session, network, "", device_id=router.id,
                          device_owner=DEVICE_OWNER_ROUTER_GATEWAY, port_security_enabled=False)
    if fixed_ips is None:
        ports.allocate_default(session, port)
    else:
        assert context is not None
        for subnet, ip in ports.requested_ips(session, context, network, fixed_ips,
                                              "update_router:external_gateway_info"):
            ipam.allocate(session, port, subnet, ip)
    if not ports.allocations(session, port.id):
        raise bad_request("ExternalIpAddressExhausted",
                          f"Unable to find any IP address on external network {network.id}.")
    router.gw_port_id, router.enable_snat = port.id, enable_snat
    session.flush()
    return port


def clear_gateway(session: Session, router: Router) -> None:
    """Remove the gateway port (not while floating IPs reach the router through it)."""
    port = gateway_port(session, router)
    if port is None:
        return
    in_use = session.scalar(select(FloatingIP.id).where(
        FloatingIP.router_id == router.id, FloatingIP.floating_network_id == port.network_id))
    if in_use is not None:
        raise conflict("RouterExternalGatewayInUseByFloatingIp",
                       f"Gateway cannot be updated for router {router.id}, since a gateway to "
                       f"external network {port.network_id} is required by one or more "
                       "floating IPs.")
    router.gw_port_id = None
    session.flush()
    ports.remove_port(session, port)


def connected_subnets(session: Session, router: Router) -> list[Subnet]:
    """Subnets the router has an address on (interfaces and gateway)."""
    port_ids = [p.id for p in interface_ports(session, router.id)]
    if router.gw_port_id:
        port_ids.append(router.gw_port_id)
    return list(session.scalars(select(Subnet).join(
        IPAllocation, IPAllocation.subnet_id == Subnet.id).where(
        IPAllocation.port_id.in_(port_ids))))


def check_routes(session: Session, router: Router, value: Any) -> list[dict[str, str]]:
    """Static routes: each nexthop on a subnet the router is connected to."""
    routes = parse_routes(value, bad_request(
        "RoutesExhausted", f"Unable to complete operation for {router.id}. The number of "
                           f"routes exceeds the maximum {MAX_ROUTES}."), MAX_ROUTES)
    cidrs = [ipaddress.IPv4Network(s.cidr) for s in connected_subnets(session, router)]
    for route in routes:
        nexthop = ipaddress.IPv4Address(route["nexthop"])
        if not any(nexthop in cidr for cidr in cidrs):
            raise bad_request("InvalidRoutes", f"Invalid format for routes: {[route]}, the "
                                               "nexthop is not connected with router")
    return routes


def _interface_info(router: Router, port: Port, subnet_ids: list[str]) -> dict[str, Any]:
    return {"id": router.id, "tenant_id": router.project_id, "project_id": router.project_id,
            "port_id": port.id, "network_id": port.network_id,
            "subnet_id": subnet_ids[0] if subnet_ids else None, "subnet_ids": subnet_ids}


def _attached_subnets(session: Session, router_id: str) -> set[str]:
    return set(session.scalars(select(IPAllocation.subnet_id).join(Port).where(
        Port.device_id == router_id, Port.device_owner == DEVICE_OWNER_ROUTER_INTERFACE)))


def _check_network(session: Session, context: RequestContext, router: Router,
                   network_id: str) -> None:
    network = session.get(Network, network_id)
    assert network is not None
    if network.external:
        raise bad("router", f"Network {network.id} is an external network: it is the "
                            "router's gateway (router set --external-gateway), not an "
                            "interface")
    if not usable(context, network) or (not context.is_admin and not network.shared
                                        and network.project_id != router.project_id):
        raise not_found("NetworkNotFound", f"Network {network.id} could not be found.")


def attach_subnet(session: Session, context: RequestContext, router: Router,
                  subnet_id: str) -> Port:
    """An interface port holding the subnet's gateway address."""
    subnet = get_subnet(session, context, subnet_id)
    _check_network(session, context, router, subnet.network_id)
    if subnet.id in _attached_subnets(session, router.id):
        raise bad("router", f"Router already has a port on subnet {subnet.id}")
    if not subnet.gateway_ip:
        raise bad("router", "Subnet for router interface must have a gateway IP")
    holder = session.scalar(select(IPAllocation.port_id).where(
        IPAllocation.network_id == subnet.network_id,
        IPAllocation.ip_address == subnet.gateway_ip))
    if holder is not None:
        raise ip_in_use(subnet.network_id, subnet.gateway_ip)
    network = session.get(Network, subnet.network_id)
    assert network is not None
    port = ports.new_port(session, network, router.project_id, device_id=router.id,
                          device_owner=DEVICE_OWNER_ROUTER_INTERFACE,
                          port_security_enabled=False)
    ipam.allocate(session, port, subnet, subnet.gateway_ip)
    session.flush()
    return port


def attach_port(session: Session, context: RequestContext, router: Router,
                port_id: str) -> Port:
    """Make a free port (with fixed IPs) an interface of the router."""
    port = ports.get_port(session, context, port_id)
    if port.device_id or port.device_owner:
        raise conflict("PortInUse", f"Unable to complete operation on port {port.id} for "
                                    f"network {port.network_id}. Port already has an attached "
                                    f"device {port.device_id or port.device_owner}.")
    _check_network(session, context, router, port.network_id)
    held = ports.allocations(session, port.id)
    if not held:
        raise bad("router", "Router port must have at least one fixed IP")
    attached = _attached_subnets(session, router.id)
    for allocation in held:
        if allocation.subnet_id in attached:
            raise bad("router", f"Router already has a port on subnet {allocation.subnet_id}")
    port.device_id, port.device_owner = router.id, DEVICE_OWNER_ROUTER_INTERFACE
    port.status = "ACTIVE"
    for link in session.scalars(select(PortSecurityGroup).where(
            PortSecurityGroup.port_id == port.id)):
        session.delete(link)
    session.flush()
    return port


def add_interface(session: Session, context: RequestContext, router_id: str,
                  body: Any) -> dict[str, Any]:
    """PUT /routers/{id}/add_router_interface: {subnet_id} or {port_id}."""
    context.require_writer()
    router = get_router(session, context, router_id)
    subnet_id, port_id = _interface_request(body)
    if port_id is not None:
        port = attach_port(session, context, router, port_id)
    else:
        assert subnet_id is not None
        port = attach_subnet(session, context, router, subnet_id)
    return _interface_info(router, port, [a.subnet_id for a in ports.allocations(
        session, port.id)])


def _interface_request(body: Any) -> tuple[str | None, str | None]:
    if not isinstance(body, dict):
        raise bad("router", "Either subnet_id or port_id must be specified")
    subnet_id, port_id = body.get("subnet_id"), body.get("port_id")
    if subnet_id is None and port_id is None:
        raise bad("router", "Either subnet_id or port_id must be specified")
    for value in (subnet_id, port_id):
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"'{value}' is not a valid UUID")
    return subnet_id, port_id


def remove_interface(session: Session, context: RequestContext, router_id: str,
                     body: Any) -> dict[str, Any]:
    """PUT /routers/{id}/remove_router_interface: {subnet_id} and/or {port_id}."""
    context.require_writer()
    router = get_router(session, context, router_id)
    subnet_id, port_id = _interface_request(body)
    candidates = interface_ports(session, router.id)
    if port_id is not None:
        port = next((p for p in candidates if p.id == port_id), None)
        if port is None:
            raise not_found("RouterInterfaceNotFound", f"Router {router.id} does not have an "
                                                       f"interface with id {port_id}")
        if subnet_id is not None and subnet_id not in {
                a.subnet_id for a in ports.allocations(session, port.id)}:
            raise bad_request("SubnetMismatchForPort", f"Subnet on port {port.id} does not "
                                                       f"match the requested subnet "
                                                       f"{subnet_id}.")
    else:
        assert subnet_id is not None
        port = next((p for p in candidates if subnet_id in {
            a.subnet_id for a in ports.allocations(session, p.id)}), None)
        if port is None:
            raise not_found("RouterInterfaceNotFoundForSubnet",
                            f"Router {router.id} has no interface on subnet {subnet_id}")
    subnet_ids = [a.subnet_id for a in ports.allocations(session, port.id)]
    info = _interface_info(router, port, subnet_ids)
    detach_port(session, router, port)
    return info


def detach_port(session: Session, router: Router, port: Port) -> None:
    """Remove an interface, unless floating IPs or static routes depend on it."""
    for allocation in ports.allocations(session, port.id):
        subnet = session.get(Subnet, allocation.subnet_id)
        assert subnet is not None
        cidr = ipaddress.IPv4Network(subnet.cidr)
        for fip in session.scalars(select(FloatingIP).where(FloatingIP.router_id == router.id)):
            if fip.fixed_ip_address and ipaddress.IPv4Address(fip.fixed_ip_address) in cidr:
                raise conflict("RouterInterfaceInUseByFloatingIP",
                               f"Router interface for subnet {subnet.id} on router {router.id} "
                               "cannot be deleted, as it is required by one or more floating "
                               "IPs.")
        if any(ipaddress.IPv4Address(r["nexthop"]) in cidr for r in router.routes or []):
            raise conflict("RouterInterfaceInUseByRoute",
                           f"Router interface for subnet {subnet.id} on router {router.id} "
                           "cannot be deleted, as it is required by one or more routes.")
    ports.remove_port(session, port)


def delete_router(session: Session, context: RequestContext, router_id: str) -> None:
    """DELETE /routers/{id}: not while it has interfaces; its gateway goes with it."""
    context.require_writer()
    router = get_router(session, context, router_id)
    if interface_ports(session, router.id):
        raise conflict("RouterInUse", f"Router {router.id} still has ports")
    delete_router_record(session, router)


def delete_router_record(session: Session, router: Router) -> None:
    clear_gateway(session, router)
    session.delete(router)
    session.flush()

