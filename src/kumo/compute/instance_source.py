"""`InstanceSource` over compute's server records: what the metadata service may know."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from kumo.compute.models import Server
from kumo.db.engine import session_scope
from kumo.metadata.instance import InstanceView, PublicKey
from kumo.network.models import SecurityGroup
from kumo.runtime import Runtime

NETWORK_ID = "7b1f3c52-6f6e-4d7e-9a53-6b756d6f6e65"  # kumo-net, the one network


class ServerInstanceSource:
    """Looks servers up by id in the database; None for unknown (or deleted) servers."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def lookup(self, server_id: str) -> InstanceView | None:
        with session_scope(self.runtime.sessions) as session:
            server = session.get(Server, server_id)
            if server is None:
                return None
            groups = list(session.scalars(
                select(SecurityGroup.name).where(SecurityGroup.id.in_(server.security_group_ids))))
            return view_of(server, tuple(groups), self.runtime)


def view_of(server: Server, groups: tuple[str, ...], runtime: Runtime) -> InstanceView:
    """The metadata view of one server record."""
    settings = runtime.settings.metadata
    keys: tuple[PublicKey, ...] = ()
    if server.key_name and server.key_data:
        kind = "x509" if server.key_data.startswith("-----BEGIN") else "ssh"
        keys = (PublicKey(name=server.key_name, type=kind, data=server.key_data),)
    meta = dict(server.meta or {})
    return InstanceView(
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
        network_id=NETWORK_ID,
    )


def _vendor_data(runtime: Runtime, server_id: str) -> dict[str, object]:
    """What the network part tells cloud-init (the package proxy), if anything."""
    agent: Any = runtime.services.get("network")
    return agent.vendor_data(server_id) if hasattr(agent, "vendor_data") else {}
