"""The external network kumo makes at its first start (devstack's `public`).

Admin-owned, `router:external`, not shared, the default for routers' gateways, with one
subnet (`[network] external_cidr`, default 172.24.4.0/24 as in devstack) whose gateway,
the first address, is the host's end of kumo's uplink, and whose pool holds the floating
IPs (`[network] external_allocation_pool`, default the rest of the subnet). It is made once:
when any external network exists kumo leaves the networks alone, so an operator's
changes stay.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.config import ConfigError, NetworkSettings
from kumo.errors import KumoError
from kumo.network import subnets
from kumo.network.models import Network
from kumo.network.networks import allocate_vni


def _pools(settings: NetworkSettings) -> list[dict[str, str]] | None:
    if not settings.external_allocation_pool:
        return None
    start, sep, end = settings.external_allocation_pool.partition("-")
    if not sep:
        raise ConfigError("[network] external_allocation_pool: expected START-END, got "
                          f"{settings.external_allocation_pool!r}")
    return [{"start": start.strip(), "end": end.strip()}]


def ensure_external_network(session: Session, settings: NetworkSettings) -> Network | None:
    """Make `public` and its subnet unless an external network exists (None then)."""
    if session.scalar(select(Network.id).where(Network.external.is_(True))) is not None:
        return None
    from kumo.identity.bootstrap import ADMIN_PROJECT
    from kumo.identity.models import Project

    project = session.scalar(select(Project).where(Project.name == ADMIN_PROJECT))
    if project is None:
        return None
    network = Network(name=settings.external_network_name, project_id=project.id,
                      external=True, is_default=True, mtu=settings.tenant_mtu,
                      vni=allocate_vni(session),
                      description="External network: floating IPs and router gateways")
    session.add(network)
    session.flush()
    admin = RequestContext(user_id="", user_name="kumo", project_id=project.id,
                           project_name=ADMIN_PROJECT, roles=("admin",), token="",
                           expires_at=datetime.now(UTC) + timedelta(minutes=1))
    spec: dict[str, object] = {"network_id": network.id, "cidr": settings.external_cidr,
                               "name": f"{settings.external_network_name}-subnet",
                               "enable_dhcp": False}
    pools = _pools(settings)
    if pools is not None:
        spec["allocation_pools"] = pools
    try:
        # The host's route to this subnet is kumo's own uplink: no host-route check.
        subnets.create_subnet(session, admin, {"subnet": spec}, check_host_routes=False)
    except KumoError as exc:
        raise ConfigError(f"[network] external network {settings.external_cidr}: "
                          f"{exc.message}") from None
    return network
