"""Networks: who sees and uses them, their MTU and VNI, and what blocks their deletion.

Neutron's rules: a network belongs to a project; `shared` networks are usable by every
project and `router:external` ones visible to all (only admins set either, or
`is_default`). Each network gets a unique VXLAN id (`provider:segmentation_id`, which
also names it across hosts) and an MTU of at most the underlay's minus VXLAN's 50 bytes.
A network is deleted with its subnets and DHCP port, but not while other ports are on it
(409 `NetworkInUse`).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.config import NetworkSettings
from kumo.network.common import (
    admin_only,
    boolean,
    owner_of,
    require_default,
    resource_body,
    text,
    whole,
)
from kumo.network.errors import (
    InvalidInput,
    PolicyNotAuthorized,
    conflict,
    network_not_found,
)
from kumo.network.models import (
    DEVICE_OWNER_DHCP,
    DEVICE_OWNER_ROUTER_GATEWAY,
    Network,
    Port,
    Subnet,
)

MAX_VNI = 2**24 - 1
MIN_MTU = 68
ATTRIBUTES = frozenset({
    "name", "description", "admin_state_up", "shared", "router:external", "is_default", "mtu",
    "port_security_enabled", "project_id", "tenant_id", "availability_zone_hints",
    "provider:network_type", "provider:physical_network", "provider:segmentation_id",
    "dns_domain", "qos_policy_id",
})
ADMIN_ONLY = ("shared", "router:external", "is_default", "provider:network_type",
              "provider:physical_network", "provider:segmentation_id")


def visible(context: RequestContext, network: Network) -> bool:
    """Neutron's get_network: admins, the owner, and everyone for shared or external ones."""
    return (context.is_admin or network.project_id == context.project_id or network.shared
            or network.external)


def usable(context: RequestContext, network: Network) -> bool:
    """Who may put ports on it: admins, the owner, and everyone when it is shared."""
    return context.is_admin or network.project_id == context.project_id or network.shared


def get_network(session: Session, context: RequestContext, network_id: str) -> Network:
    """A network the caller may see (404 `NetworkNotFound` otherwise)."""
    network = session.get(Network, network_id)
    if network is None or not visible(context, network):
        raise network_not_found(network_id)
    return network


def owned_network(session: Session, context: RequestContext, network_id: str,
                  action: str) -> Network:
    """A network the caller may change: 404 if unseen, 403 if seen but not theirs."""
    network = get_network(session, context, network_id)
    if not context.is_admin and network.project_id != context.project_id:
        raise PolicyNotAuthorized(f"rule:{action}")
    return network


def list_networks(session: Session, context: RequestContext) -> list[Network]:
    """Every network the caller may see, oldest first."""
    stmt = select(Network).order_by(Network.created_at, Network.id)
    return [n for n in session.scalars(stmt) if visible(context, n)]


def subnets_of(session: Session, network_id: str) -> list[Subnet]:
    return list(session.scalars(select(Subnet).where(Subnet.network_id == network_id)
                                .order_by(Subnet.created_at, Subnet.id)))


def allocate_vni(session: Session) -> int:
    """The lowest VXLAN id no network uses."""
    used = sorted(session.scalars(select(Network.vni)))
    candidate = 1
    for vni in used:
        if vni > candidate:
            break
        candidate = vni + 1
    if candidate > MAX_VNI:
        raise conflict("NoNetworkAvailable", "Unable to create the network. No tenant network "
                                             "is available for allocation.")
    return candidate


def _mtu(spec: dict[str, Any], settings: NetworkSettings, default: int) -> int:
    if spec.get("mtu") is None:
        return default
    mtu = whole(spec["mtu"], "mtu")
    if mtu < MIN_MTU:
        raise InvalidInput(f"'{mtu}' is too small - must be at least '{MIN_MTU}'")
    if mtu > settings.tenant_mtu:
        raise InvalidInput(f"Requested MTU is too big, maximum is {settings.tenant_mtu}")
    return mtu


def _unsupported(spec: dict[str, Any]) -> None:
    require_default(spec, "provider:network_type", (None, "vxlan"),
                    "kumo's tenant networks are VXLAN networks")
    require_default(spec, "provider:physical_network", (None,),
                    "kumo's networks have no physical network")
    require_default(spec, "availability_zone_hints", (None, [], ["nova"]),
                    "kumo has one availability zone, nova")
    require_default(spec, "qos_policy_id", (None,), "kumo has no QoS policies")
    require_default(spec, "dns_domain", (None, ""), "kumo's networks use openstacklocal")


def _segmentation_id(session: Session, spec: dict[str, Any], current: int | None) -> int:
    value = spec.get("provider:segmentation_id")
    if value is None:
        return current if current is not None else allocate_vni(session)
    vni = whole(value, "provider:segmentation_id")
    if not 1 <= vni <= MAX_VNI:
        raise InvalidInput(f"{vni} is not a valid VXLAN VNI (1..{MAX_VNI})")
    taken = session.scalar(select(Network.id).where(Network.vni == vni))
    if taken is not None and vni != current:
        raise conflict("TunnelIdInUse", f"Unable to create the network. The tunnel ID {vni} "
                                        "is in use.")
    return vni


def _check_default(session: Session, network: Network) -> None:
    """At most one default external network (what auto-allocation routes through)."""
    if not network.is_default:
        return
    if not network.external:
        raise InvalidInput("is_default can only be set on an external network "
                           "(router:external)")
    other = session.scalar(select(Network.id).where(
        Network.is_default.is_(True), Network.external.is_(True), Network.id != network.id))
    if other is not None:
        raise conflict("DefaultExternalNetworkExists",
                       f"Unable to set network {network.id} as default external network: "
                       f"already one default exists: {other}")


def create_network(session: Session, context: RequestContext, body: Any,
                   settings: NetworkSettings) -> Network:
    """POST /networks."""
    context.require_writer()
    spec = resource_body(body, "network", ATTRIBUTES)
    admin_only(context, "create_network", spec, ADMIN_ONLY)
    _unsupported(spec)
    network = Network(
        name=text(spec, "name"), description=text(spec, "description"),
        project_id=owner_of(context, spec, "create_network"),
        admin_state_up=boolean(spec, "admin_state_up", True),
        shared=boolean(spec, "shared", False), external=boolean(spec, "router:external", False),
        is_default=boolean(spec, "is_default", False),
        mtu=_mtu(spec, settings, settings.tenant_mtu),
        port_security_enabled=boolean(spec, "port_security_enabled", True),
        vni=_segmentation_id(session, spec, None),
    )
    session.add(network)
    session.flush()
    _check_default(session, network)
    return network


def update_network(session: Session, context: RequestContext, network_id: str, body: Any,
                   settings: NetworkSettings) -> Network:
    """PUT /networks/{id}."""
    context.require_writer()
    network = owned_network(session, context, network_id, "update_network")
    spec = resource_body(body, "network", ATTRIBUTES - {"project_id", "tenant_id"})
    admin_only(context, "update_network", spec, ADMIN_ONLY)
    _unsupported(spec)
    for key in ("name", "description"):
        if key in spec:
            setattr(network, key, text(spec, key))
    for key, column in (("admin_state_up", "admin_state_up"),
                        ("port_security_enabled", "port_security_enabled"),
                        ("is_default", "is_default")):
        if key in spec:
            setattr(network, column, boolean(spec, key, getattr(network, column)))
    if "mtu" in spec:
        network.mtu = _mtu(spec, settings, network.mtu)
    if "shared" in spec:
        shared = boolean(spec, "shared", network.shared)
        if network.shared and not shared:
            _check_unshare(session, network)
        network.shared = shared
    if "router:external" in spec:
        external = boolean(spec, "router:external", network.external)
        if network.external and not external and _ports_owned_by(
                session, network.id, (DEVICE_OWNER_ROUTER_GATEWAY,)):
            raise conflict("ExternalNetworkInUse",
                           f"External network {network.id} cannot be updated to be made "
                           "non-external, since it has existing gateway ports.")
        network.external = external
    network.vni = _segmentation_id(session, spec, network.vni)
    _check_default(session, network)
    network.revision_number += 1
    session.flush()
    return network


def _check_unshare(session: Session, network: Network) -> None:
    others = session.scalar(select(func.count()).select_from(Port).where(
        Port.network_id == network.id, Port.project_id != network.project_id,
        Port.project_id != "", Port.device_owner != DEVICE_OWNER_DHCP))
    if others:
        raise conflict("InvalidSharedSetting",
                       f"Unable to reconfigure sharing settings for network {network.id}. "
                       "Multiple tenants are using it.")


def _ports_owned_by(session: Session, network_id: str, owners: tuple[str, ...]) -> list[str]:
    return list(session.scalars(select(Port.id).where(
        Port.network_id == network_id, Port.device_owner.in_(owners))))


def delete_network(session: Session, context: RequestContext, network_id: str) -> None:
    """DELETE /networks/{id}: with its subnets and DHCP port; 409 while ports remain."""
    context.require_writer()
    network = owned_network(session, context, network_id, "delete_network")
    in_use = list(session.scalars(select(Port.id).where(
        Port.network_id == network.id, Port.device_owner != DEVICE_OWNER_DHCP)
        .order_by(Port.created_at, Port.id)))
    if in_use:
        raise conflict("NetworkInUse",
                       f"Unable to complete operation on network {network.id}. There are one "
                       "or more ports still in use on the network, id for these ports is: "
                       + ",".join(in_use) + ".")
    for port in session.scalars(select(Port).where(Port.network_id == network.id)):
        session.delete(port)
    session.flush()
    for subnet in subnets_of(session, network.id):
        session.delete(subnet)
    session.flush()
    session.delete(network)
    session.flush()
