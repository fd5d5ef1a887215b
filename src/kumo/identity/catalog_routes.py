"""Keystone v3 regions, services and endpoints over HTTP (admin writes, anyone reads)."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kumo.api.http import read_json
from kumo.api.parts import runtime_from
from kumo.errors import BadRequest
from kumo.identity import catalog, schema, views
from kumo.identity.catalog import INTERFACES, EndpointEntry, ServiceEntry
from kumo.identity.models import Region
from kumo.identity.policy import admin, as_json, caller, run, v3_url


def _text(body: dict[str, Any], key: str, *, required: bool = False, high: int = 255) -> Any:
    if key not in body or body[key] is None:
        if required:
            raise BadRequest(f"Invalid input for field '{key}': '{key}' is a required property.")
        return None
    value = body[key]
    if not isinstance(value, str) or len(value) > high:
        raise BadRequest(f"Invalid input for field '{key}': a string of at most {high} "
                         "characters.")
    return value


def _enabled(body: dict[str, Any], fields: dict[str, Any]) -> None:
    if "enabled" in body:
        if not isinstance(body["enabled"], bool):
            raise BadRequest(f"Invalid input for field 'enabled': {body['enabled']!r} is not "
                             "of type 'boolean'.")
        fields["enabled"] = body["enabled"]


# ---- services -------------------------------------------------------------------------


def service_view(entry: ServiceEntry, v3: str) -> dict[str, Any]:
    return {**(entry.extra or {}), "id": entry.id, "type": entry.type, "name": entry.name,
            "description": entry.description, "enabled": entry.enabled,
            "links": {"self": f"{v3}/services/{entry.id}"}}


def service_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    kind = _text(body, "type", required=creating)
    if kind is not None:
        fields["type"] = kind
    for key in ("name", "description"):
        value = _text(body, key, high=65535 if key == "description" else 255)
        if value is not None:
            fields[key] = value
    _enabled(body, fields)
    extra = {k: v for k, v in body.items()
             if k not in {"type", "name", "description", "enabled", "id", "links"}}
    if extra:
        fields["extra"] = extra
    return fields


async def services(request: Request) -> Response:
    v3 = v3_url(request)
    if request.method == "POST":
        admin(request, "create_service")
        body = schema.object_under(await read_json(request), "service")
        fields = service_fields(body, creating=True)
        created = await run(request, lambda s: catalog.create_service(s, fields))
        return as_json({"service": service_view(created, v3)}, 201)
    caller(request)
    query = request.query_params

    def work(session: Session) -> list[dict[str, Any]]:
        return [service_view(e, v3) for e in catalog.services(session)
                if query.get("type", e.type) == e.type and query.get("name", e.name) == e.name]

    return as_json(views.collection("services", await run(request, work), str(request.url)))


async def service(request: Request) -> Response:
    service_id, v3 = request.path_params["service_id"], v3_url(request)
    if request.method == "DELETE":
        admin(request, "delete_service")
        await run(request, lambda s: catalog.delete_service(s, service_id))
        return Response(status_code=204)
    if request.method == "PATCH":
        admin(request, "update_service")
        fields = service_fields(schema.object_under(await read_json(request), "service"),
                                creating=False)
        entry = await run(request, lambda s: catalog.update_service(s, service_id, fields))
    else:
        caller(request)
        entry = await run(request, lambda s: catalog.get_service(s, service_id))
    return as_json({"service": service_view(entry, v3)})


# ---- endpoints ------------------------------------------------------------------------


def endpoint_view(entry: EndpointEntry, v3: str) -> dict[str, Any]:
    return {"id": entry.id, "interface": entry.interface, "region": entry.region_id,
            "region_id": entry.region_id, "service_id": entry.service_id, "url": entry.url,
            "enabled": entry.enabled, "links": {"self": f"{v3}/endpoints/{entry.id}"}}


def endpoint_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in ("service_id", "url", "interface"):
        value = _text(body, key, required=creating, high=65535 if key == "url" else 255)
        if value is not None:
            fields[key] = value
    if fields.get("interface") not in (None, *INTERFACES):
        raise BadRequest(f"Invalid input for field 'interface': one of {', '.join(INTERFACES)}.")
    region = _text(body, "region_id")
    legacy = _text(body, "region")
    if region is not None:
        fields["region_id"] = region
    elif legacy is not None:
        # The older `region` attribute: Keystone creates that region when it is missing.
        fields["region_id"], fields["create_region"] = legacy, True
    _enabled(body, fields)
    return fields


async def endpoints(request: Request) -> Response:
    runtime, v3 = runtime_from(request), v3_url(request)
    if request.method == "POST":
        admin(request, "create_endpoint")
        fields = endpoint_fields(schema.object_under(await read_json(request), "endpoint"),
                                 creating=True)
        created = await run(request, lambda s: catalog.create_endpoint(runtime, s, fields))
        return as_json({"endpoint": endpoint_view(created, v3)}, 201)
    caller(request)
    query = request.query_params

    def matches(entry: EndpointEntry) -> bool:
        return (query.get("service_id", entry.service_id) == entry.service_id
                and query.get("interface", entry.interface) == entry.interface
                and query.get("region_id", entry.region_id) == entry.region_id)

    def work(session: Session) -> list[dict[str, Any]]:
        return [endpoint_view(e, v3) for e in catalog.endpoints(runtime, session) if matches(e)]

    return as_json(views.collection("endpoints", await run(request, work), str(request.url)))


async def endpoint(request: Request) -> Response:
    runtime, v3 = runtime_from(request), v3_url(request)
    endpoint_id = request.path_params["endpoint_id"]
    if request.method == "DELETE":
        admin(request, "delete_endpoint")
        await run(request, lambda s: catalog.delete_endpoint(runtime, s, endpoint_id))
        return Response(status_code=204)
    if request.method == "PATCH":
        admin(request, "update_endpoint")
        fields = endpoint_fields(schema.object_under(await read_json(request), "endpoint"),
                                 creating=False)
        entry = await run(
            request, lambda s: catalog.update_endpoint(runtime, s, endpoint_id, fields))
    else:
        caller(request)
        entry = await run(request, lambda s: catalog.get_endpoint(runtime, s, endpoint_id))
    return as_json({"endpoint": endpoint_view(entry, v3)})


# ---- regions --------------------------------------------------------------------------


def region_view(region: Region, v3: str) -> dict[str, Any]:
    return {**(region.extra or {}), "id": region.id, "description": region.description,
            "parent_region_id": region.parent_region_id,
            "links": {"self": f"{v3}/regions/{region.id}"}}


def region_fields(body: dict[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    description = _text(body, "description", high=65535)
    if description is not None:
        fields["description"] = description
    if "parent_region_id" in body:
        fields["parent_region_id"] = _text(body, "parent_region_id")
    region_id = _text(body, "id")
    if region_id is not None:
        fields["id"] = region_id
    extra = {k: v for k, v in body.items()
             if k not in {"id", "description", "parent_region_id", "links"}}
    if extra:
        fields["extra"] = extra
    return fields


async def regions(request: Request) -> Response:
    runtime, v3 = runtime_from(request), v3_url(request)
    if request.method == "POST":
        admin(request, "create_region")
        fields = region_fields(schema.object_under(await read_json(request), "region"))

        def create(session: Session) -> dict[str, Any]:
            return region_view(catalog.create_region(runtime, session, fields), v3)

        return as_json({"region": await run(request, create)}, 201)
    caller(request)
    parent = request.query_params.get("parent_region_id")

    def work(session: Session) -> list[dict[str, Any]]:
        return [region_view(r, v3) for r in catalog.regions(runtime, session)
                if parent is None or r.parent_region_id == parent]

    return as_json(views.collection("regions", await run(request, work), str(request.url)))


async def region(request: Request) -> Response:
    runtime, v3 = runtime_from(request), v3_url(request)
    region_id = request.path_params["region_id"]
    if request.method == "DELETE":
        admin(request, "delete_region")
        await run(request, lambda s: catalog.delete_region(runtime, s, region_id))
        return Response(status_code=204)
    if request.method in ("PATCH", "PUT"):
        admin(request, "update_region" if request.method == "PATCH" else "create_region")
        fields = region_fields(schema.object_under(await read_json(request), "region"))
        if fields.pop("id", region_id) != region_id:
            raise BadRequest("Invalid input: the region id in the body differs from the URL.")

        def change(session: Session) -> dict[str, Any]:
            if request.method == "PUT":
                return region_view(
                    catalog.create_region(runtime, session, {**fields, "id": region_id}), v3)
            return region_view(catalog.update_region(runtime, session, region_id, fields), v3)

        return as_json({"region": await run(request, change)},
                       201 if request.method == "PUT" else 200)
    caller(request)

    def show(session: Session) -> dict[str, Any]:
        return region_view(catalog.get_region(runtime, session, region_id), v3)

    return as_json({"region": await run(request, show)})


def routes() -> list[BaseRoute]:
    return [
        Route("/v3/services", services, methods=["GET", "POST"]),
        Route("/v3/services/{service_id}", service, methods=["GET", "PATCH", "DELETE"]),
        Route("/v3/endpoints", endpoints, methods=["GET", "POST"]),
        Route("/v3/endpoints/{endpoint_id}", endpoint, methods=["GET", "PATCH", "DELETE"]),
        Route("/v3/regions", regions, methods=["GET", "POST"]),
        Route("/v3/regions/{region_id}", region, methods=["GET", "PUT", "PATCH", "DELETE"]),
    ]
