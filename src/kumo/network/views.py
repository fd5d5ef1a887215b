"""Neutron's JSON shapes for networks, subnets, ports, routers and floating IPs.

Each `*_views` function renders a list of records with a handful of queries (not one
per record). Admin-only attributes (`provider:*`, `binding:host_id`, ...) are shown to
admins only, as Neutron's policy strips them for others.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.network.models import (
    FloatingIP,
    IPAllocation,
    Network,
    Port,
    PortSecurityGroup,
    Router,
    Subnet,
)

AVAILABILITY_ZONE = "nova"
DNS_DOMAIN = "openstacklocal"  # Neutron's default dns_domain (dnsmasq's domain)


def when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def _standard(record: Any) -> dict[str, Any]:
    """Attributes every Neutron resource has (project, description, timestamps, revision)."""
    return {"project_id": record.project_id, "tenant_id": record.project_id,
            "description": record.description, "tags": [],
            "created_at": when(record.created_at), "updated_at": when(record.updated_at),
            "revision_number": record.revision_number}


def network_views(session: Session, networks: list[Network],
                  context: RequestContext) -> list[dict[str, Any]]:
    subnet_ids: dict[str, list[str]] = defaultdict(list)
    for subnet_id, network_id in session.execute(select(Subnet.id, Subnet.network_id).order_by(
            Subnet.created_at, Subnet.id)):
        subnet_ids[network_id].append(subnet_id)
    shown = []
    for network in networks:
        body = {"id": network.id, "name": network.name, "status": network.status,
                "admin_state_up": network.admin_state_up, "subnets": subnet_ids[network.id],
                "shared": network.shared, "router:external": network.external,
                "is_default": network.is_default, "mtu": network.mtu,
                "port_security_enabled": network.port_security_enabled,
                "availability_zones": [AVAILABILITY_ZONE], "availability_zone_hints": [],
                "ipv4_address_scope": None, "ipv6_address_scope": None,
                "l2_adjacency": True, "dns_domain": "", "qos_policy_id": None,
                **_standard(network)}
        if context.is_admin:
            body.update({"provider:network_type": "vxlan", "provider:physical_network": None,
                         "provider:segmentation_id": network.vni})
        shown.append(body)
    return shown


def subnet_views(session: Session, subnets: list[Subnet]) -> list[dict[str, Any]]:
    external: dict[str, bool] = {i: e for i, e in session.execute(
        select(Network.id, Network.external))}
    return [{
        "id": s.id, "name": s.name, "network_id": s.network_id, "ip_version": s.ip_version,
        "cidr": s.cidr, "gateway_ip": s.gateway_ip, "enable_dhcp": s.enable_dhcp,
        "allocation_pools": list(s.allocation_pools or []),
        "dns_nameservers": list(s.dns_nameservers or []),
        "host_routes": list(s.host_routes or []), "subnetpool_id": None,
        "ipv6_ra_mode": None, "ipv6_address_mode": None, "service_types": [],
        "segment_id": None, "dns_publish_fixed_ip": False,
        "router:external": external.get(s.network_id, False), **_standard(s),
    } for s in subnets]


def _allocations(session: Session, port_ids: list[str]) -> dict[str, list[dict[str, str]]]:
    fixed: dict[str, list[dict[str, str]]] = defaultdict(list)
    if port_ids:
        for alloc in session.scalars(select(IPAllocation).where(
                IPAllocation.port_id.in_(port_ids)).order_by(IPAllocation.id)):
            fixed[alloc.port_id].append({"subnet_id": alloc.subnet_id,
                                         "ip_address": alloc.ip_address})
    return fixed


def _dns_assignment(port: Port, ip: str) -> dict[str, str]:
    """The name DHCP and DNS give the address: dns_name, else Neutron's host-10-0-0-5."""
    host = port.dns_name or "host-" + ip.replace(".", "-")
    return {"hostname": host, "ip_address": ip, "fqdn": f"{host}.{DNS_DOMAIN}."}


def port_views(session: Session, ports: list[Port],
               context: RequestContext) -> list[dict[str, Any]]:
    ids = [p.id for p in ports]
    fixed = _allocations(session, ids)
    groups: dict[str, list[str]] = defaultdict(list)
    if ids:
        for link in session.scalars(select(PortSecurityGroup).where(
                PortSecurityGroup.port_id.in_(ids))):
            groups[link.port_id].append(link.security_group_id)
    shown = []
    for port in ports:
        body = {
            "id": port.id, "name": port.name, "network_id": port.network_id,
            "mac_address": port.mac_address, "admin_state_up": port.admin_state_up,
            "status": port.status, "device_id": port.device_id,
            "device_owner": port.device_owner, "fixed_ips": fixed[port.id],
            "security_groups": sorted(groups[port.id]),
            "port_security_enabled": port.port_security_enabled,
            "allowed_address_pairs": [], "extra_dhcp_opts": [], "dns_name": port.dns_name,
            "dns_assignment": [_dns_assignment(port, ip["ip_address"])
                               for ip in fixed[port.id]],
            "dns_domain": "", "binding:vnic_type": "normal", "qos_policy_id": None,
            "qos_network_policy_id": None, "propagate_uplink_status": False,
            "ip_allocation": "immediate", "resource_request": None, **_standard(port),
        }
        if context.is_admin:
            body.update({"binding:host_id": port.host_id, "binding:profile": {},
                         "binding:vif_type": "bridge" if port.host_id else "unbound",
                         "binding:vif_details": {"port_filter": True} if port.host_id
                         else {}})
        shown.append(body)
    return shown


def router_views(session: Session, routers: list[Router]) -> list[dict[str, Any]]:
    gw_ids = [r.gw_port_id for r in routers if r.gw_port_id]
    gateways = {p.id: p for p in session.scalars(select(Port).where(Port.id.in_(gw_ids)))}
    fixed = _allocations(session, gw_ids)
    shown = []
    for router in routers:
        gateway = gateways.get(router.gw_port_id or "")
        info = None if gateway is None else {
            "network_id": gateway.network_id, "enable_snat": router.enable_snat,
            "external_fixed_ips": fixed[gateway.id]}
        shown.append({
            "id": router.id, "name": router.name, "status": router.status,
            "admin_state_up": router.admin_state_up, "external_gateway_info": info,
            "routes": list(router.routes or []), "distributed": False, "ha": False,
            "flavor_id": None, "availability_zones": [AVAILABILITY_ZONE],
            "availability_zone_hints": [], **_standard(router),
        })
    return shown


def floating_ip_views(session: Session, fips: list[FloatingIP]) -> list[dict[str, Any]]:
    port_ids = [f.fixed_port_id for f in fips if f.fixed_port_id]
    fixed_ports = {p.id: p for p in session.scalars(select(Port).where(Port.id.in_(port_ids)))}
    shown = []
    for fip in fips:
        port = fixed_ports.get(fip.fixed_port_id or "")
        details = None if port is None else {
            "name": port.name, "network_id": port.network_id, "mac_address": port.mac_address,
            "admin_state_up": port.admin_state_up, "status": port.status,
            "device_id": port.device_id, "device_owner": port.device_owner}
        shown.append({
            "id": fip.id, "floating_ip_address": fip.floating_ip_address,
            "floating_network_id": fip.floating_network_id, "router_id": fip.router_id,
            "port_id": fip.fixed_port_id, "fixed_ip_address": fip.fixed_ip_address,
            "status": fip.status, "port_details": details, "port_forwardings": [],
            "qos_policy_id": None, "qos_network_policy_id": None, "dns_name": "",
            "dns_domain": "", **_standard(fip),
        })
    return shown
