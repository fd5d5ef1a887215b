"""What the metadata service and the config drive know of one server.

`compute` fills an `InstanceView` from its records; `metadata` only reads it. The
server is identified by the channel the request came in on, never by the request.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class PublicKey:
    name: str
    type: str  # "ssh" | "x509"
    data: str  # the public key text, e.g. "ssh-ed25519 AAAA... comment"


@dataclass(frozen=True)
class NicAddress:
    """One IPv4 address of a NIC with what its subnet tells a guest (static config)."""

    address: str
    netmask: str
    gateway: str | None = None
    routes: tuple[tuple[str, str], ...] = ()  # (destination CIDR, nexthop) beyond the default
    dns: tuple[str, ...] = ()


@dataclass(frozen=True)
class NicView:
    """One NIC of the guest, in order: its port, MAC, MTU and addresses."""

    port_id: str
    network_id: str
    mac: str
    mtu: int
    addresses: tuple[NicAddress, ...] = ()


@dataclass(frozen=True)
class InstanceView:
    uuid: str
    name: str
    hostname: str
    project_id: str
    created_at: datetime
    availability_zone: str = "nova"
    launch_index: int = 0
    reservation_id: str = ""
    instance_type: str = ""  # flavor name
    image_id: str = ""
    keys: tuple[PublicKey, ...] = ()
    user_data: bytes | None = None
    meta: dict[str, str] = field(default_factory=dict)
    security_groups: tuple[str, ...] = ("default",)
    local_ipv4: str = "169.254.2.15"  # QEMU user networking's first DHCP address
    public_ipv4: str = ""
    mac_address: str = "52:54:00:12:34:56"
    mtu: int = 1450
    dns_nameservers: tuple[str, ...] = ()
    http_tokens: str = "optional"  # "optional" | "required" (IMDSv2)
    # Added by `metadata` (all optional): what network_data.json and the EC2 tree name.
    network_id: str = ""  # the network the server's port is on (network_data.json)
    port_id: str = ""  # the port (Neutron's vif_id); default: derived from uuid
    # vendor_data.json (nova's StaticJSON provider): e.g. cloud-init's apt proxy.
    vendor_data: dict[str, object] = field(default_factory=dict)
    # Real networks: every NIC (network_data.json renders them as nova's netutils does).
    # Empty under QEMU user networking: one DHCP link with the fields above.
    nics: tuple[NicView, ...] = ()
    kernel_id: str = ""  # EC2 kernel-id / ramdisk-id appear only when set
    ramdisk_id: str = ""


class InstanceSource(Protocol):
    """Looks a server up by id (compute implements it over its database)."""

    def lookup(self, server_id: str) -> InstanceView | None: ...
