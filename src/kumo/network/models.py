"""Network tables (Neutron's model): security groups and rules, networks, subnets, ports,
routers and floating IPs."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from kumo.db.base import Base, new_id, utcnow


class SecurityGroup(Base):
    __tablename__ = "security_groups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255))
    description: Mapped[str] = mapped_column(Text, default="")
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    stateful: Mapped[bool] = mapped_column(default=True)
    revision_number: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class SecurityGroupRule(Base):
    __tablename__ = "security_group_rules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    security_group_id: Mapped[str] = mapped_column(
        ForeignKey("security_groups.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str] = mapped_column(String(64))
    direction: Mapped[str] = mapped_column(String(8))  # ingress | egress
    ethertype: Mapped[str] = mapped_column(String(4), default="IPv4")
    protocol: Mapped[str | None] = mapped_column(String(16), default=None)
    port_range_min: Mapped[int | None] = mapped_column(default=None)
    port_range_max: Mapped[int | None] = mapped_column(default=None)
    remote_ip_prefix: Mapped[str | None] = mapped_column(String(64), default=None)
    remote_group_id: Mapped[str | None] = mapped_column(String(36), default=None)
    description: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# --- networks, subnets, ports, routers, floating IPs --------------------------------
#
# Neutron's model, kept small. Router interfaces, router gateways, DHCP servers and
# floating IPs are ports too, told apart by `device_owner` (Neutron's values), so one
# table holds every MAC and every fixed IP of the cloud.

DEVICE_OWNER_COMPUTE = "compute:nova"
DEVICE_OWNER_DHCP = "network:dhcp"
DEVICE_OWNER_ROUTER_INTERFACE = "network:router_interface"
DEVICE_OWNER_ROUTER_GATEWAY = "network:router_gateway"
DEVICE_OWNER_FLOATING_IP = "network:floatingip"


class Network(Base):
    __tablename__ = "networks"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    admin_state_up: Mapped[bool] = mapped_column(default=True)
    shared: Mapped[bool] = mapped_column(default=False)
    external: Mapped[bool] = mapped_column(default=False)  # router:external
    is_default: Mapped[bool] = mapped_column(default=False)
    mtu: Mapped[int] = mapped_column(Integer, default=1450)
    port_security_enabled: Mapped[bool] = mapped_column(default=True)
    # The VXLAN network identifier (provider:segmentation_id); also names the bridge.
    vni: Mapped[int] = mapped_column(Integer, unique=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    revision_number: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Subnet(Base):
    __tablename__ = "subnets"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    ip_version: Mapped[int] = mapped_column(Integer, default=4)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway_ip: Mapped[str | None] = mapped_column(String(64), default=None)
    enable_dhcp: Mapped[bool] = mapped_column(default=True)
    # [{"start": ip, "end": ip}], [ip], [{"destination": cidr, "nexthop": ip}]
    allocation_pools: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    dns_nameservers: Mapped[list[str]] = mapped_column(JSON, default=list)
    host_routes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    revision_number: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Port(Base):
    __tablename__ = "ports"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    mac_address: Mapped[str] = mapped_column(String(17), unique=True)
    admin_state_up: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(16), default="DOWN")
    device_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    device_owner: Mapped[str] = mapped_column(String(255), default="")
    port_security_enabled: Mapped[bool] = mapped_column(default=True)
    host_id: Mapped[str] = mapped_column(String(255), default="")  # binding:host_id
    # The guest's host name (Neutron's dns-integration `dns_name`): DHCP hands it out.
    dns_name: Mapped[str] = mapped_column(String(255), default="")
    revision_number: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class IPAllocation(Base):
    """A port's fixed IP; unique per network (and, with non-overlapping subnets, cloud-wide)."""

    __tablename__ = "ip_allocations"
    __table_args__ = (UniqueConstraint("network_id", "ip_address"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    port_id: Mapped[str] = mapped_column(ForeignKey("ports.id", ondelete="CASCADE"), index=True)
    subnet_id: Mapped[str] = mapped_column(
        ForeignKey("subnets.id", ondelete="CASCADE"), index=True
    )
    network_id: Mapped[str] = mapped_column(String(36))
    ip_address: Mapped[str] = mapped_column(String(64))


class PortSecurityGroup(Base):
    __tablename__ = "port_security_groups"

    port_id: Mapped[str] = mapped_column(
        ForeignKey("ports.id", ondelete="CASCADE"), primary_key=True
    )
    security_group_id: Mapped[str] = mapped_column(
        ForeignKey("security_groups.id", ondelete="CASCADE"), primary_key=True, index=True
    )


class Router(Base):
    __tablename__ = "routers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(255), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    admin_state_up: Mapped[bool] = mapped_column(default=True)
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    # The gateway port on an external network (external_gateway_info), if any.
    gw_port_id: Mapped[str | None] = mapped_column(
        ForeignKey("ports.id", ondelete="SET NULL"), default=None
    )
    enable_snat: Mapped[bool] = mapped_column(default=True)
    # Static routes (`router set --route`): [{"destination": cidr, "nexthop": ip}]
    routes: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    revision_number: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class FloatingIP(Base):
    __tablename__ = "floating_ips"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    description: Mapped[str] = mapped_column(Text, default="")
    floating_network_id: Mapped[str] = mapped_column(
        ForeignKey("networks.id", ondelete="CASCADE"), index=True
    )
    floating_ip_address: Mapped[str] = mapped_column(String(64), unique=True)
    # Its own port on the external network (device_owner network:floatingip).
    floating_port_id: Mapped[str] = mapped_column(ForeignKey("ports.id", ondelete="CASCADE"))
    # Where it points: a port and one of its fixed IPs, through a router.
    fixed_port_id: Mapped[str | None] = mapped_column(
        ForeignKey("ports.id", ondelete="SET NULL"), default=None, index=True
    )
    fixed_ip_address: Mapped[str | None] = mapped_column(String(64), default=None)
    router_id: Mapped[str | None] = mapped_column(
        ForeignKey("routers.id", ondelete="SET NULL"), default=None
    )
    status: Mapped[str] = mapped_column(String(16), default="DOWN")
    revision_number: Mapped[int] = mapped_column(default=1)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class VirtualInterface(Base):
    """A server's NIC: which port, in which order, and whether the port outlives the server.

    Nova's `virtual_interfaces` (plus its info cache's `preserve_on_delete`): ports compute
    created for a server go with it; a port the user passed (`--port`) is only unbound.
    """

    __tablename__ = "virtual_interfaces"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    server_id: Mapped[str] = mapped_column(String(36), index=True)
    port_id: Mapped[str] = mapped_column(
        ForeignKey("ports.id", ondelete="CASCADE"), unique=True
    )
    position: Mapped[int] = mapped_column(Integer, default=0)
    preserve_on_delete: Mapped[bool] = mapped_column(default=False)
    tag: Mapped[str | None] = mapped_column(String(60), default=None)


class AutoAllocatedTopology(Base):
    """A project's default network and router, made on first use (Neutron's table)."""

    __tablename__ = "auto_allocated_topologies"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id", ondelete="CASCADE"))
    router_id: Mapped[str | None] = mapped_column(
        ForeignKey("routers.id", ondelete="SET NULL"), default=None
    )
