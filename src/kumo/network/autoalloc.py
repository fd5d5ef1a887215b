"""A project's default network, made on first use (Neutron's auto-allocated topology).

What devstack gives its demo project, made the first time a project boots a server
without naming a network (or asks `GET /auto-allocated-topology/{project}`): a network
`private`, a subnet `private-subnet` cut from `[network] default_subnet_pool` (the first
free /default_prefixlen clear of every subnet and host route, so projects never overlap),
and a router `router1` with that subnet and a gateway on the default external network
(SNAT only when `[network] enable_snat_by_default` allows outbound NAT).
"""

from __future__ import annotations

import ipaddress

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.config import NetworkSettings
from kumo.network import hostroutes, routers, subnets
from kumo.network.errors import PolicyNotAuthorized, conflict
from kumo.network.models import AutoAllocatedTopology, Network, Port, Router, Subnet
from kumo.network.networks import allocate_vni

NETWORK_NAME = "private"
SUBNET_NAME = "private-subnet"
ROUTER_NAME = "router1"


def default_external(session: Session) -> Network | None:
    """The external network default routers use (`is_default`, else the oldest external)."""
    stmt = select(Network).where(Network.external.is_(True))
    return (session.scalar(stmt.where(Network.is_default.is_(True)))
            or session.scalar(stmt.order_by(Network.created_at, Network.id)))


def free_cidr(session: Session, settings: NetworkSettings) -> ipaddress.IPv4Network:
    """The first piece of the default pool no subnet and no host route overlaps."""
    pool = ipaddress.IPv4Network(settings.default_subnet_pool)
    taken = [ipaddress.IPv4Network(c) for c in session.scalars(select(Subnet.cidr))]
    external = [ipaddress.IPv4Network(c) for c in session.scalars(
        select(Subnet.cidr).join(Network, Network.id == Subnet.network_id)
        .where(Network.external.is_(True)))]
    routes = [dst for dst, _dev in hostroutes.routes(external)]
    for candidate in pool.subnets(new_prefix=settings.default_prefixlen):
        if not any(candidate.overlaps(other) for other in (*taken, *routes)):
            return candidate
    raise conflict("AutoAllocationFailure",
                   f"Deployment error: the default subnet pool {pool} has no free "
                   f"/{settings.default_prefixlen} left ([network] default_subnet_pool).")


def topology_of(session: Session, project_id: str) -> AutoAllocatedTopology | None:
    return session.get(AutoAllocatedTopology, project_id)


def ensure_topology(session: Session, context: RequestContext, project_id: str,
                    settings: NetworkSettings) -> str:
    """The project's default network id, made (with subnet and router) on first use."""
    if project_id != context.project_id and not context.is_admin:
        raise PolicyNotAuthorized("rule:get_auto_allocated_topology")
    existing = topology_of(session, project_id)
    if existing is not None and session.get(Network, existing.network_id) is not None:
        return existing.network_id
    cidr = free_cidr(session, settings)
    network = Network(name=NETWORK_NAME, project_id=project_id, vni=allocate_vni(session),
                      mtu=settings.tenant_mtu,
                      description="Default network, made on first use")
    session.add(network)
    session.flush()
    owner = RequestContext(user_id=context.user_id, user_name=context.user_name,
                           project_id=project_id, project_name=context.project_name,
                           roles=("member",), token="", expires_at=context.expires_at)
    subnet = subnets.create_subnet(session, owner, {"subnet": {
        "network_id": network.id, "name": SUBNET_NAME, "cidr": str(cidr), "ip_version": 4}})
    router = Router(name=ROUTER_NAME, project_id=project_id,
                    enable_snat=settings.enable_snat_by_default,
                    description="Default router, made on first use")
    session.add(router)
    session.flush()
    external = default_external(session)
    if external is not None:
        routers.set_gateway(session, router, external, settings.enable_snat_by_default, None)
    routers.attach_subnet(session, owner, router, subnet.id)
    if existing is not None:
        session.delete(existing)
        session.flush()
    session.add(AutoAllocatedTopology(project_id=project_id, network_id=network.id,
                                      router_id=router.id))
    session.flush()
    return network.id


def check_requirements(session: Session, settings: NetworkSettings) -> None:
    """`?fields=dry-run`: can a topology be made now? (409 saying why not)."""
    if default_external(session) is None:
        raise conflict("AutoAllocationFailure",
                       "Deployment error: No default router:external network.")
    free_cidr(session, settings)


def delete_topology(session: Session, context: RequestContext, project_id: str) -> None:
    """DELETE /auto-allocated-topology/{project}: its router, subnet and network go."""
    if project_id != context.project_id and not context.is_admin:
        raise PolicyNotAuthorized("rule:delete_auto_allocated_topology")
    context.require_writer()
    record = topology_of(session, project_id)
    if record is None:
        return
    network = session.get(Network, record.network_id)
    router = session.get(Router, record.router_id) if record.router_id else None
    session.delete(record)
    session.flush()
    if router is not None:
        for port in list(session.scalars(select(Port).where(Port.device_id == router.id))):
            routers.detach_port(session, router, port)
        routers.delete_router_record(session, router)
    if network is not None:
        from kumo.network.networks import delete_network

        delete_network(session, context, network.id)
