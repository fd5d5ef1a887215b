"""The service catalog: kumo's own APIs (built in) plus the services an admin registers.

kumo's identity, image, compute and network services and their endpoints are built
from the running kumo's URL on every request (the port may change between runs), so
they are listed but cannot be changed or deleted. Regions, services and endpoints an
admin creates (`openstack service create`, `endpoint create`, `region create`) are
rows, and show up in every token's catalog too.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.errors import BadRequest, Conflict, Forbidden, NotFound
from kumo.identity.models import CatalogEndpoint, CatalogService, Region
from kumo.runtime import Runtime

SERVICES = (
    # (type, name) as in a devstack catalog
    ("identity", "keystone"),
    ("image", "glance"),
    ("compute", "nova"),
    ("network", "neutron"),
    # Block Storage: the SDK and OSC look for `block-storage` (its official type);
    # older clients and tempest for `volumev3`. devstack lists both.
    ("block-storage", "cinder"),
    ("volumev3", "cinderv3"),
)
INTERFACES = ("public", "internal", "admin")


def _stable_id(*parts: str) -> str:
    return hashlib.md5("/".join(parts).encode(), usedforsecurity=False).hexdigest()


@dataclass(frozen=True)
class ServiceEntry:
    id: str
    type: str
    name: str
    description: str = ""
    enabled: bool = True
    builtin: bool = False
    extra: dict[str, Any] | None = None


@dataclass(frozen=True)
class EndpointEntry:
    id: str
    service_id: str
    interface: str
    url: str
    region_id: str | None
    enabled: bool = True
    builtin: bool = False


def builtin_services() -> list[ServiceEntry]:
    return [ServiceEntry(_stable_id(kind), kind, name, f"kumo's {kind} API", builtin=True)
            for kind, name in SERVICES]


def builtin_endpoints(runtime: Runtime) -> list[EndpointEntry]:
    from kumo.api.app import endpoint

    region = runtime.settings.region
    return [EndpointEntry(_stable_id(kind, interface), _stable_id(kind), interface,
                          endpoint(runtime, kind), region, builtin=True)
            for kind, _ in SERVICES for interface in INTERFACES]


def services(session: Session) -> list[ServiceEntry]:
    rows = session.scalars(select(CatalogService).order_by(CatalogService.type))
    return builtin_services() + [
        ServiceEntry(r.id, r.type, r.name, r.description, r.enabled, extra=r.extra) for r in rows]


def endpoints(runtime: Runtime, session: Session) -> list[EndpointEntry]:
    rows = session.scalars(select(CatalogEndpoint).order_by(CatalogEndpoint.id))
    return builtin_endpoints(runtime) + [
        EndpointEntry(r.id, r.service_id, r.interface, r.url, r.region_id, r.enabled)
        for r in rows]


def catalog(runtime: Runtime, session: Session | None = None) -> list[dict[str, Any]]:
    """The catalog a scoped token carries: every enabled service with its enabled endpoints."""
    found_services = services(session) if session is not None else builtin_services()
    found_endpoints = (endpoints(runtime, session) if session is not None
                       else builtin_endpoints(runtime))
    entries = []
    for service in found_services:
        if not service.enabled:
            continue
        listed = [{"id": e.id, "interface": e.interface, "region": e.region_id,
                   "region_id": e.region_id, "url": e.url}
                  for e in found_endpoints if e.service_id == service.id and e.enabled]
        entries.append({"id": service.id, "type": service.type, "name": service.name,
                        "endpoints": listed})
    return entries


def _apply(row: CatalogService | Region, fields: dict[str, Any]) -> None:
    """Set the fields; unknown attributes merge into `extra`, as Keystone keeps them."""
    extra = fields.pop("extra", None)
    for key, value in fields.items():
        setattr(row, key, value)
    if extra:
        row.extra = {**(row.extra or {}), **extra}


# ---- services -------------------------------------------------------------------------


def get_service(session: Session, service_id: str) -> ServiceEntry:
    for service in services(session):
        if service.id == service_id:
            return service
    raise NotFound(f"Could not find service: {service_id}.")


def _builtin_refused(what: str, ident: str) -> Forbidden:
    return Forbidden(f"The {what} {ident} is one of kumo's own APIs; it cannot be changed.")


def create_service(session: Session, fields: dict[str, Any]) -> ServiceEntry:
    row = CatalogService(**fields)
    session.add(row)
    session.flush()
    return get_service(session, row.id)


def update_service(session: Session, service_id: str, fields: dict[str, Any]) -> ServiceEntry:
    row = session.get(CatalogService, service_id)
    if row is None:
        get_service(session, service_id)  # 404 when it is not built in either
        raise _builtin_refused("service", service_id)
    _apply(row, fields)
    session.flush()
    return get_service(session, service_id)


def delete_service(session: Session, service_id: str) -> None:
    """Delete a registered service and its endpoints."""
    row = session.get(CatalogService, service_id)
    if row is None:
        get_service(session, service_id)
        raise _builtin_refused("service", service_id)
    for endpoint in session.scalars(select(CatalogEndpoint).where(
            CatalogEndpoint.service_id == service_id)):
        session.delete(endpoint)
    session.delete(row)
    session.flush()


# ---- endpoints ------------------------------------------------------------------------


def get_endpoint(runtime: Runtime, session: Session, endpoint_id: str) -> EndpointEntry:
    for entry in endpoints(runtime, session):
        if entry.id == endpoint_id:
            return entry
    raise NotFound(f"Could not find endpoint: {endpoint_id}.")


def _check_endpoint_refs(runtime: Runtime, session: Session, fields: dict[str, Any]) -> None:
    if fields.pop("create_region", False) and fields["region_id"] not in region_ids(
            runtime, session):
        create_region(runtime, session, {"id": fields["region_id"]})
    if "service_id" in fields:
        try:
            get_service(session, fields["service_id"])
        except NotFound:
            raise BadRequest(f"Invalid input: no service {fields['service_id']}.") from None
    region = fields.get("region_id")
    if region is not None and region not in region_ids(runtime, session):
        raise BadRequest(f"Invalid input: no region {region}.")


def create_endpoint(runtime: Runtime, session: Session, fields: dict[str, Any]) -> EndpointEntry:
    _check_endpoint_refs(runtime, session, fields)
    row = CatalogEndpoint(**fields)
    session.add(row)
    session.flush()
    return get_endpoint(runtime, session, row.id)


def update_endpoint(runtime: Runtime, session: Session, endpoint_id: str,
                    fields: dict[str, Any]) -> EndpointEntry:
    row = session.get(CatalogEndpoint, endpoint_id)
    if row is None:
        get_endpoint(runtime, session, endpoint_id)
        raise _builtin_refused("endpoint", endpoint_id)
    _check_endpoint_refs(runtime, session, fields)
    for key, value in fields.items():
        setattr(row, key, value)
    session.flush()
    return get_endpoint(runtime, session, endpoint_id)


def delete_endpoint(runtime: Runtime, session: Session, endpoint_id: str) -> None:
    row = session.get(CatalogEndpoint, endpoint_id)
    if row is None:
        get_endpoint(runtime, session, endpoint_id)
        raise _builtin_refused("endpoint", endpoint_id)
    session.delete(row)
    session.flush()


# ---- regions --------------------------------------------------------------------------


def builtin_region(runtime: Runtime) -> Region:
    return Region(id=runtime.settings.region, description="kumo's region",
                  parent_region_id=None, extra={})


def regions(runtime: Runtime, session: Session) -> list[Region]:
    rows = list(session.scalars(select(Region).order_by(Region.id)))
    if all(r.id != runtime.settings.region for r in rows):
        rows.insert(0, builtin_region(runtime))
    return rows


def region_ids(runtime: Runtime, session: Session) -> set[str]:
    return {r.id for r in regions(runtime, session)}


def get_region(runtime: Runtime, session: Session, region_id: str) -> Region:
    for region in regions(runtime, session):
        if region.id == region_id:
            return region
    raise NotFound(f"Could not find region: {region_id}.")


def create_region(runtime: Runtime, session: Session, fields: dict[str, Any]) -> Region:
    region_id = fields.get("id")
    if region_id is not None and region_id in region_ids(runtime, session):
        raise Conflict(f"Conflict occurred attempting to store region - Duplicate ID, "
                       f"{region_id}.")
    parent = fields.get("parent_region_id")
    if parent is not None and parent not in region_ids(runtime, session):
        raise NotFound(f"Could not find region: {parent}.")
    row = Region(**fields)
    session.add(row)
    session.flush()
    return row


def update_region(runtime: Runtime, session: Session, region_id: str,
                  fields: dict[str, Any]) -> Region:
    row = session.get(Region, region_id)
    if row is None:
        get_region(runtime, session, region_id)
        raise _builtin_refused("region", region_id)
    parent = fields.get("parent_region_id")
    if parent is not None:
        if parent not in region_ids(runtime, session):
            raise NotFound(f"Could not find region: {parent}.")
        if parent == region_id:
            raise BadRequest("Invalid input: a region cannot be its own parent.")
    _apply(row, fields)
    session.flush()
    return row


def delete_region(runtime: Runtime, session: Session, region_id: str) -> None:
    row = session.get(Region, region_id)
    if row is None:
        get_region(runtime, session, region_id)
        raise _builtin_refused("region", region_id)
    if session.scalar(select(Region.id).where(Region.parent_region_id == region_id).limit(1)):
        raise Forbidden(f"Cannot delete region {region_id}: it has child regions.")
    session.delete(row)
    session.flush()
