"""Ports: a MAC, fixed IPs, security groups, and what the port is plugged into.

Every address in the cloud is a port's: servers' NICs (`compute:nova`), router
interfaces and gateways, the DHCP server, floating IPs. Neutron's rules: the network
must be usable (own or shared); only admins and the network's owner pick addresses and
MACs; a port with port security gets the project's `default` group unless told
otherwise, and none without port security (400); router and floating IP ports are
changed through their own APIs (409 here).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.network import ipam, secgroups
from kumo.network.common import (
    admin_only,
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
    PolicyNotAuthorized,
    bad_request,
    conflict,
    ip_generation_failure,
    port_not_found,
)
from kumo.network.models import (
    DEVICE_OWNER_DHCP,
    DEVICE_OWNER_FLOATING_IP,
    DEVICE_OWNER_ROUTER_GATEWAY,
    DEVICE_OWNER_ROUTER_INTERFACE,
    FloatingIP,
    IPAllocation,
    Network,
    Port,
    PortSecurityGroup,
    Subnet,
)
from kumo.network.networks import get_network, usable
from kumo.network.subnets import subnet_of_network

ATTRIBUTES = frozenset({
    "name", "description", "network_id", "admin_state_up", "mac_address", "fixed_ips",
    "device_id", "device_owner", "project_id", "tenant_id", "security_groups",
    "port_security_enabled", "binding:host_id", "binding:vnic_type", "binding:profile",
    "dns_name", "allowed_address_pairs", "extra_dhcp_opts", "qos_policy_id",
    "propagate_uplink_status",
})
L3_OWNERS = (DEVICE_OWNER_ROUTER_INTERFACE, DEVICE_OWNER_ROUTER_GATEWAY,
             DEVICE_OWNER_FLOATING_IP)
_DNS_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$", re.IGNORECASE)
FixedRequest = tuple[Subnet, str | None]


def visible(context: RequestContext, port: Port, network: Network | None) -> bool:
    """Neutron's get_port: admins, the port's project and the network's owner."""
    return (context.is_admin or port.project_id == context.project_id
            or (network is not None and network.project_id == context.project_id))


def get_port(session: Session, context: RequestContext, port_id: str) -> Port:
    port = session.get(Port, port_id)
    if port is None or not visible(context, port, session.get(Network, port.network_id)):
        raise port_not_found(port_id)
    return port


def list_ports(session: Session, context: RequestContext) -> list[Port]:
    owners = {} if context.is_admin else {
        n.id: n for n in session.scalars(select(Network).where(
            Network.project_id == context.project_id))}
    stmt = select(Port).order_by(Port.created_at, Port.id)
    return [p for p in session.scalars(stmt)
            if context.is_admin or p.project_id == context.project_id or p.network_id in owners]


def allocations(session: Session, port_id: str) -> list[IPAllocation]:
    return list(session.scalars(select(IPAllocation).where(IPAllocation.port_id == port_id)
                                .order_by(IPAllocation.id)))


def groups_of(session: Session, port_id: str) -> list[str]:
    return sorted(session.scalars(select(PortSecurityGroup.security_group_id).where(
        PortSecurityGroup.port_id == port_id)))


def _privileged(context: RequestContext, network: Network) -> bool:
    """Admins and the network's owner may pick addresses and MACs (Neutron's policy)."""
    return context.is_admin or network.project_id == context.project_id


def requested_ips(session: Session, context: RequestContext, network: Network, value: Any,
                  action: str) -> list[FixedRequest]:
    """`fixed_ips`: [{subnet_id?, ip_address?}] -> (subnet, ip or None) on this network."""
    if not isinstance(value, list):
        raise InvalidInput(f"Invalid data format for fixed IP: '{value}'")
    subnets = list(session.scalars(select(Subnet).where(Subnet.network_id == network.id)
                                   .order_by(Subnet.created_at, Subnet.id)))
    wanted: list[FixedRequest] = []
    for entry in value:
        if not isinstance(entry, dict) or not entry or set(entry) - {"subnet_id", "ip_address"}:
            raise InvalidInput(f"Invalid data format for fixed IP: '{entry}'")
        ip = entry.get("ip_address")
        if ip is not None:
            if not _privileged(context, network):
                raise PolicyNotAuthorized(f"rule:{action}:fixed_ips:ip_address")
            ip = str(ipam.parse_ip(ip))
        if entry.get("subnet_id"):
            subnet = subnet_of_network(session, context, network, str(entry["subnet_id"]))
        else:
            assert ip is not None
            found = [s for s in subnets if ipam.valid_for_subnet(s, ipam.parse_ip(ip))]
            if not found:
                raise bad_request("InvalidIpForNetwork",
                                  f"IP address {ip} is not a valid IP for any of the subnets "
                                  "on the specified network.")
            subnet = found[0]
        if any(s.id == subnet.id and (ip is None or i == ip) for s, i in wanted):
            raise InvalidInput("Duplicate IP address or subnet in fixed_ips")
        wanted.append((subnet, ip))
    return wanted


def allocate_default(session: Session, port: Port) -> None:
    """One address from the first IPv4 subnet with room (Neutron's way); 409 if all full."""
    subnets = list(session.scalars(select(Subnet).where(Subnet.network_id == port.network_id)
                                   .order_by(Subnet.created_at, Subnet.id)))
    for subnet in subnets:
        if ipam.free_address(session, subnet) is not None:
            ipam.allocate(session, port, subnet)
            return
    if subnets:
        raise ip_generation_failure(port.network_id)


def set_groups(session: Session, context: RequestContext, port: Port,
               requested: list[str] | None, *, has_ip: bool) -> None:
    """The port's security groups: `requested`, else `default` when port security is on."""
    for link in session.scalars(select(PortSecurityGroup).where(
            PortSecurityGroup.port_id == port.id)):
        session.delete(link)
    session.flush()
    if requested is None:
        if not (port.port_security_enabled and has_ip) or \
                port.device_owner.startswith("network:"):
            return
        requested = [secgroups.ensure_default(session, port.project_id).id]
    if requested and not (port.port_security_enabled and has_ip):
        raise InvalidInput("Port security must be enabled and port must have an IP address in "
                           "order to use security groups")
    groups = [secgroups.get_group(session, context, str(group_id))
              for group_id in dict.fromkeys(requested)]
    if len({group.stateful for group in groups}) > 1:
        raise conflict("SecurityGroupConflict", "Error Cannot apply both stateful and stateless "
                       "security groups on the same port at the same time while attempting "
                       "the operation.")
    for group in groups:
        session.add(PortSecurityGroup(port_id=port.id, security_group_id=group.id))
    session.flush()


def _group_ids(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InvalidInput(f"Invalid data format for security groups: '{value}'")
    return list(value)


def _dns_name(spec: dict[str, Any], default: str = "") -> str:
    name = text(spec, "dns_name", default).rstrip(".")
    if name and not all(_DNS_LABEL.match(label) for label in name.split(".")):
        raise InvalidInput(f"'{name}' not a valid PQDN or FQDN. Reason: labels are letters, "
                           "digits and hyphens, at most 63 each")
    return name


def _unsupported(spec: dict[str, Any]) -> None:
    require_default(spec, "binding:vnic_type", (None, "normal"),
                    "kumo's ports are virtio NICs on a bridge")
    require_default(spec, "binding:profile", (None, {}), "kumo's ports have no binding profile")
    require_default(spec, "allowed_address_pairs", (None, []),
                    "anti-spoofing pins each port to its own MAC and fixed IPs")
    require_default(spec, "extra_dhcp_opts", (None, []),
                    "kumo's dnsmasq serves the subnet's options only")
    require_default(spec, "qos_policy_id", (None,), "kumo has no QoS policies")
    require_default(spec, "propagate_uplink_status", (None, False),
                    "kumo's ports have no uplink status to propagate")


def new_port(session: Session, network: Network, project_id: str, **values: Any) -> Port:
    """A port record with a fresh MAC (the caller allocates its addresses)."""
    port = Port(network_id=network.id, project_id=project_id,
                mac_address=values.pop("mac_address", None) or ipam.random_mac(session),
                port_security_enabled=values.pop("port_security_enabled",
                                                 network.port_security_enabled),
                **values)
    if port.device_owner.startswith("network:"):
        port.status = "ACTIVE"
    session.add(port)
    session.flush()
    return port


def create_port(session: Session, context: RequestContext, body: Any) -> Port:
    """POST /ports."""
    context.require_writer()
    spec = resource_body(body, "port", ATTRIBUTES)
    network_id = spec.get("network_id")
    if not isinstance(network_id, str):
        raise NeutronBadRequest("Failed to parse request. Required attribute 'network_id' "
                                "not specified")
    network = get_network(session, context, network_id)
    if not usable(context, network):
        raise PolicyNotAuthorized("rule:create_port")
    admin_only(context, "create_port", spec, ("binding:host_id",))
    _unsupported(spec)
    owner = text(spec, "device_owner")
    if owner.startswith("network:") and not _privileged(context, network):
        raise PolicyNotAuthorized("rule:create_port:device_owner")
    mac = None
    if spec.get("mac_address") is not None:
        if not _privileged(context, network):
            raise PolicyNotAuthorized("rule:create_port:mac_address")
        mac = ipam.check_mac(session, spec["mac_address"], network.id)
    wanted = None if spec.get("fixed_ips") is None else requested_ips(
        session, context, network, spec["fixed_ips"], "create_port")
    port = new_port(
        session, network, owner_of(context, spec, "create_port"), mac_address=mac,
        name=text(spec, "name"), description=text(spec, "description"),
        admin_state_up=boolean(spec, "admin_state_up", True),
        device_id=text(spec, "device_id"), device_owner=owner,
        port_security_enabled=boolean(spec, "port_security_enabled",
                                      network.port_security_enabled),
        host_id=text(spec, "binding:host_id"), dns_name=_dns_name(spec),
    )
    if wanted is None:
        allocate_default(session, port)
    else:
        for subnet, ip in wanted:
            ipam.allocate(session, port, subnet, ip)
    session.flush()
    groups = _group_ids(spec["security_groups"]) if spec.get("security_groups") is not None \
        else None
    set_groups(session, context, port, groups, has_ip=bool(allocations(session, port.id)))
    return port


def update_port(session: Session, context: RequestContext, port_id: str, body: Any) -> Port:
    """PUT /ports/{id}."""
    context.require_writer()
    port = get_port(session, context, port_id)
    network = session.get(Network, port.network_id)
    assert network is not None
    require_owner(context, "update_port", port.project_id, network.project_id)
    spec = resource_body(body, "port", ATTRIBUTES - {"network_id", "project_id", "tenant_id"})
    admin_only(context, "update_port", spec, ("binding:host_id",))
    _unsupported(spec)
    for key in ("name", "description", "device_id"):
        if key in spec:
            setattr(port, key, text(spec, key))
    if "device_owner" in spec:
        owner = text(spec, "device_owner")
        if owner.startswith("network:") and not _privileged(context, network):
            raise PolicyNotAuthorized("rule:update_port:device_owner")
        port.device_owner = owner
    if "admin_state_up" in spec:
        port.admin_state_up = boolean(spec, "admin_state_up", port.admin_state_up)
    if "dns_name" in spec:
        port.dns_name = _dns_name(spec)
    if "binding:host_id" in spec:
        port.host_id = text(spec, "binding:host_id")
    if spec.get("mac_address") is not None:
        _change_mac(session, context, port, network, spec["mac_address"])
    if "fixed_ips" in spec:
        if port.device_owner in L3_OWNERS and not context.is_admin:
            raise PolicyNotAuthorized("rule:update_port:fixed_ips")
        _change_ips(session, context, port, network, spec["fixed_ips"] or [])
    has_ip = bool(allocations(session, port.id))
    current = groups_of(session, port.id)
    if "port_security_enabled" in spec:
        enabled = boolean(spec, "port_security_enabled", port.port_security_enabled)
        wanted_groups = spec.get("security_groups", current)
        if not enabled and wanted_groups:
            raise conflict("PortSecurityPortHasSecurityGroup",
                           "Port has security group associated. Cannot disable port security "
                           "or IP address until security group is removed")
        port.port_security_enabled = enabled
    if "security_groups" in spec:
        set_groups(session, context, port, _group_ids(spec["security_groups"] or []),
                   has_ip=has_ip)
    elif "fixed_ips" in spec and current and not has_ip:
        raise conflict("PortSecurityPortHasSecurityGroup",
                       "Port has security group associated. Cannot disable port security or "
                       "IP address until security group is removed")
    port.revision_number += 1
    session.flush()
    return port


def _change_mac(session: Session, context: RequestContext, port: Port, network: Network,
                value: Any) -> None:
    if not context.is_admin:
        raise PolicyNotAuthorized("rule:update_port:mac_address")
    mac = str(value).lower()
    if mac == port.mac_address:
        return
    if port.host_id:
        raise conflict("PortBound", f"Unable to complete operation on port {port.id}, port is "
                                    f"already bound, port type: bridge, old_mac "
                                    f"{port.mac_address}, new_mac {mac}.")
    port.mac_address = ipam.check_mac(session, value, network.id)


def _change_ips(session: Session, context: RequestContext, port: Port, network: Network,
                value: Any) -> None:
    wanted = requested_ips(session, context, network, value, "update_port")
    held = allocations(session, port.id)
    keep: set[int] = set()
    new: list[FixedRequest] = []
    for subnet, ip in wanted:
        match = next((a for a in held if a.id not in keep and a.subnet_id == subnet.id
                      and (ip is None or a.ip_address == ip)), None)
        if match is not None:
            keep.add(match.id)
        else:
            new.append((subnet, ip))
    for allocation in held:
        if allocation.id in keep:
            continue
        if session.scalar(select(FloatingIP.id).where(
                FloatingIP.fixed_port_id == port.id,
                FloatingIP.fixed_ip_address == allocation.ip_address)) is not None:
            raise conflict("FipAssociated", f"Unable to complete the operation on port "
                                            f"{port.id} because the port still has an "
                                            "associated floating IP.")
        session.delete(allocation)
    session.flush()
    for subnet, ip in new:
        ipam.allocate(session, port, subnet, ip)
    session.flush()


def delete_port(session: Session, context: RequestContext, port_id: str) -> Port:
    """DELETE /ports/{id}: not router or floating IP ports, nor the DHCP server."""
    context.require_writer()
    port = get_port(session, context, port_id)
    network = session.get(Network, port.network_id)
    require_owner(context, "delete_port", port.project_id,
                  network.project_id if network else None)
    if port.device_owner in L3_OWNERS:
        raise conflict("L3PortInUse", f"Port {port.id} has owner {port.device_owner} and "
                                      "therefore cannot be deleted directly via the port API.")
    if port.device_owner == DEVICE_OWNER_DHCP:
        raise conflict("ServicePortInUse", f"Port {port.id} cannot be deleted directly via the "
                                           "port API: it is the network's DHCP server; turn "
                                           "DHCP off on its subnets (subnet set --no-dhcp).")
    remove_port(session, port)
    return port


def remove_port(session: Session, port: Port) -> None:
    """Delete a port; floating IPs that pointed at it are disassociated (Neutron's way)."""
    for fip in session.scalars(select(FloatingIP).where(FloatingIP.fixed_port_id == port.id)):
        fip.fixed_port_id = fip.fixed_ip_address = fip.router_id = None
        fip.status = "DOWN"
    session.flush()
    session.delete(port)
    session.flush()
