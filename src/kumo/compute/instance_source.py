"""`InstanceSource` over compute's server records: what the metadata service may know."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import select

from kumo.compute.models import Server
from kumo.db.engine import session_scope
from kumo.metadata.instance import InstanceView, NicAddress, NicView, PublicKey
from kumo.network import nics
from kumo.network.models import SecurityGroup
from kumo.runtime import Runtime

# What network_data.json names as the network of a server without ports (user networking).
USER_NETWORK_ID = "7b1f3c52-6f6e-4d7e-9a53-6b756d6f6e65"
METADATA_ROUTE = "169.254.169.254/32"


class ServerInstanceSource:
    """Looks servers up by id in the database; None for unknown (or deleted) servers."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def lookup(self, server_id: str) -> InstanceView | None:
        with session_scope(self.runtime.sessions) as session:
            server = session.get(Server, server_id)
            if server is None:
                return None
            group_ids = nics.server_group_ids(session, server.id)
            if group_ids is None:
                group_ids = list(server.security_group_ids or [])
            groups = list(session.scalars(
                select(SecurityGroup.name).where(SecurityGroup.id.in_(group_ids))))
            return view_of(server, tuple(groups), self.runtime,
                           nics.server_nics(session, server.id))


def nic_view(nic: nics.Nic) -> NicView:
    """A NIC as the metadata service tells it: static addresses with what DHCP also gives
    (default route, host routes, the metadata route via the DHCP server, DNS servers)."""
    addresses = []
    for fixed in nic.fixed_ips:
        routes = list(fixed.host_routes)
        if fixed.dhcp_server:
            routes.insert(0, (METADATA_ROUTE, fixed.dhcp_server))
        dns = fixed.dns_nameservers or ((fixed.dhcp_server,) if fixed.dhcp_server else ())
        addresses.append(NicAddress(address=fixed.ip_address, netmask=fixed.netmask,
                                    gateway=fixed.gateway_ip, routes=tuple(routes),
                                    dns=tuple(dns)))
    return NicView(port_id=nic.port_id, network_id=nic.network_id, mac=nic.mac, mtu=nic.mtu,
                   addresses=tuple(addresses))


def view_of(server: Server, groups: tuple[str, ...], runtime: Runtime,
            server_nics: list[nics.Nic] | None = None) -> InstanceView:
    """The metadata view of one server record (user networking: QEMU's one NIC)."""
    settings = runtime.settings.metadata
    keys: tuple[PublicKey, ...] = ()
    if server.key_name and server.key_data:
        kind = "x509" if server.key_data.startswith("-----BEGIN") else "ssh"
        keys = (PublicKey(name=server.key_name, type=kind, data=server.key_data),)
    meta = dict(server.meta or {})
    view = InstanceView(
        uuid=server.id,
        name=server.name,
        hostname=server.hostname,
        project_id=server.project_id,
        created_at=server.created_at,
        availability_zone=server.availability_zone,
        launch_index=server.launch_index,
        reservation_id=server.reservation_id,
        instance_type=server.flavor_name,
        image_id=server.image_id,
        keys=keys,
        user_data=server.user_data,
        meta=meta,
        security_groups=groups or ("default",),
        mtu=settings.mtu,
        dns_nameservers=tuple(settings.dns_nameservers),
        http_tokens="required" if meta.get("http_tokens") == "required" else "optional",
        vendor_data=_vendor_data(runtime, server.id),
        network_id=server_nics[0].network_id if server_nics else USER_NETWORK_ID,
    )
    if not server_nics or nics.user_mode(runtime, server_nics):
        return view
    first = server_nics[0]
    fixed = first.fixed_ips[0].ip_address if first.fixed_ips else ""
    return replace(view, nics=tuple(nic_view(n) for n in server_nics), local_ipv4=fixed,
                   public_ipv4=dict(first.floating_ips).get(fixed, ""), mac_address=first.mac,
                   mtu=first.mtu, network_id=first.network_id, port_id=first.port_id)


def _vendor_data(runtime: Runtime, server_id: str) -> dict[str, object]:
    """What the network part tells cloud-init (the package proxy), if anything."""
    agent: Any = runtime.services.get("network")
    return agent.vendor_data(server_id) if hasattr(agent, "vendor_data") else {}
