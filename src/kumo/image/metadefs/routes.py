"""Glance's `/v2/metadefs/…` routes and `/v2/schemas/metadefs/…`: thin handlers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from kumo.api.context import RequestContext, context_of
from kumo.api.http import expect_object, read_json
from kumo.api.parts import in_session
from kumo.image.metadefs import service
from kumo.image.metadefs.models import MetadefNamespace
from kumo.image.metadefs.schemas import SCHEMAS
from kumo.image.schemas import timestamp

BASE = "/v2/metadefs/namespaces"


def namespace_view(ns: MetadefNamespace, *, detail: bool = True) -> dict[str, Any]:
    view: dict[str, Any] = {
        "namespace": ns.namespace, "display_name": ns.display_name,
        "description": ns.description, "visibility": ns.visibility,
        "protected": ns.protected, "owner": ns.owner,
        "created_at": timestamp(ns.created_at), "updated_at": timestamp(ns.updated_at),
        "schema": "/v2/schemas/metadefs/namespace", "self": f"{BASE}/{ns.namespace}",
    }
    if ns.resource_types:
        view["resource_type_associations"] = list(ns.resource_types)
    if detail:
        if ns.properties:
            view["properties"] = dict(ns.properties)
        if ns.objects:
            view["objects"] = [object_view(ns, o) for o in ns.objects]
        if ns.tags:
            view["tags"] = [{"name": t["name"]} for t in ns.tags]
    return view


def object_view(ns: MetadefNamespace, obj: dict[str, Any]) -> dict[str, Any]:
    return {**obj, "schema": "/v2/schemas/metadefs/object",
            "self": f"{BASE}/{ns.namespace}/objects/{obj['name']}"}


async def _body(request: Request, what: str) -> dict[str, Any]:
    return expect_object(await read_json(request), what)


def _ns(request: Request) -> str:
    return str(request.path_params["namespace"])


def _edit(request: Request, edit: Callable[[MetadefNamespace], Any]) -> Any:
    name = _ns(request)
    return in_session(request, lambda s, c: service.change(s, c, name, edit))


# ---- namespaces -----------------------------------------------------------------------


async def namespaces(request: Request) -> Response:
    if request.method == "POST":
        body = await _body(request, "The namespace")
        view = await in_session(
            request, lambda s, c: namespace_view(service.create_namespace(s, c, body)))
        return JSONResponse(view, status_code=201)
    query = dict(request.query_params)

    def work(session: Session, context: RequestContext) -> dict[str, Any]:
        found = service.list_namespaces(session, context, query)
        return {"namespaces": [namespace_view(ns, detail=False) for ns in found],
                "first": BASE, "schema": "/v2/schemas/metadefs/namespaces"}

    return JSONResponse(await in_session(request, work))


async def namespace(request: Request) -> Response:
    name = _ns(request)
    if request.method == "DELETE":
        await in_session(request, lambda s, c: service.delete_namespace(s, c, name))
        return Response(status_code=204)
    if request.method == "PUT":
        body = await _body(request, "The namespace")
        view = await in_session(
            request, lambda s, c: namespace_view(service.update_namespace(s, c, name, body)))
        return JSONResponse(view)
    return JSONResponse(await in_session(
        request, lambda s, c: namespace_view(service.get_namespace(s, c, name))))


# ---- properties -----------------------------------------------------------------------


async def properties(request: Request) -> Response:
    if request.method == "POST":
        body = await _body(request, "The property")
        name = body.get("name")
        result = await _edit(request, lambda ns: service.set_property(
            ns, str(name), body, creating=True))
        return JSONResponse(result, status_code=201)
    if request.method == "DELETE":
        await _edit(request, lambda ns: setattr(ns, "properties", {}))
        return Response(status_code=204)
    name = _ns(request)

    def read(session: Session, context: RequestContext) -> dict[str, Any]:
        return {"properties": dict(service.get_namespace(session, context, name).properties)}

    return JSONResponse(await in_session(request, read))


async def property_(request: Request) -> Response:
    name, prop = _ns(request), str(request.path_params["name"])
    if request.method == "DELETE":
        await _edit(request, lambda ns: service.delete_property(ns, prop))
        return Response(status_code=204)
    if request.method == "PUT":
        body = await _body(request, "The property")
        new_name = str(body.get("name", prop))
        return JSONResponse(await _edit(request, lambda ns: service.set_property(
            ns, new_name, body, creating=False, old_name=prop)))
    return JSONResponse(await in_session(request, lambda s, c: service.get_property(
        service.get_namespace(s, c, name), prop)))


# ---- objects --------------------------------------------------------------------------


async def objects(request: Request) -> Response:
    name = _ns(request)
    if request.method == "POST":
        body = await _body(request, "The object")

        def create(ns: MetadefNamespace) -> dict[str, Any]:
            return object_view(ns, service.put_object(ns, body, old_name=None))

        return JSONResponse(await _edit(request, create), status_code=201)
    if request.method == "DELETE":
        await _edit(request, lambda ns: setattr(ns, "objects", []))
        return Response(status_code=204)

    def read(session: Session, context: RequestContext) -> dict[str, Any]:
        ns = service.get_namespace(session, context, name)
        return {"objects": [object_view(ns, o) for o in ns.objects or []],
                "schema": "/v2/schemas/metadefs/objects"}

    return JSONResponse(await in_session(request, read))


async def object_(request: Request) -> Response:
    name, obj = _ns(request), str(request.path_params["name"])
    if request.method == "DELETE":
        await _edit(request, lambda ns: service.delete_object(ns, obj))
        return Response(status_code=204)
    if request.method == "PUT":
        body = await _body(request, "The object")
        return JSONResponse(await _edit(request, lambda ns: object_view(
            ns, service.put_object(ns, body, old_name=obj))))

    def read(session: Session, context: RequestContext) -> dict[str, Any]:
        ns = service.get_namespace(session, context, name)
        return object_view(ns, service.find_object(ns, obj))

    return JSONResponse(await in_session(request, read))


# ---- tags -----------------------------------------------------------------------------


async def tags(request: Request) -> Response:
    name = _ns(request)
    if request.method == "POST":
        body = await _body(request, "The tags")
        append = request.headers.get("x-openstack-append", "").lower() == "true"
        created = await _edit(request, lambda ns: service.add_tags(
            ns, body.get("tags"), append=append))
        return JSONResponse({"tags": [{"name": t["name"]} for t in created]}, status_code=201)
    if request.method == "DELETE":
        await _edit(request, lambda ns: setattr(ns, "tags", []))
        return Response(status_code=204)

    def read(session: Session, context: RequestContext) -> dict[str, Any]:
        return {"tags": list(service.get_namespace(session, context, name).tags or [])}

    return JSONResponse(await in_session(request, read))


async def tag(request: Request) -> Response:
    name, tag_name = _ns(request), str(request.path_params["name"])
    if request.method == "DELETE":
        await _edit(request, lambda ns: service.delete_tag(ns, tag_name))
        return Response(status_code=204)
    if request.method == "POST":
        return JSONResponse(await _edit(request, lambda ns: service.add_tag(ns, tag_name)),
                            status_code=201)
    if request.method == "PUT":
        body = await _body(request, "The tag")
        return JSONResponse(await _edit(request, lambda ns: service.rename_tag(
            ns, tag_name, body)))
    return JSONResponse(await in_session(request, lambda s, c: service.find_tag(
        service.get_namespace(s, c, name), tag_name)))


# ---- resource types -------------------------------------------------------------------


async def resource_types(request: Request) -> Response:
    def read(session: Session, _context: RequestContext) -> dict[str, Any]:
        return {"resource_types": [
            {"name": r.name, "created_at": timestamp(r.created_at),
             "updated_at": timestamp(r.updated_at)}
            for r in service.list_resource_types(session)]}

    return JSONResponse(await in_session(request, read))


async def associations(request: Request) -> Response:
    name = _ns(request)
    if request.method == "POST":
        body = await _body(request, "The resource type association")

        def create(session: Session, context: RequestContext) -> dict[str, Any]:
            ns = service.writable_namespace(session, context, name)
            record = service.associate(session, ns, body)
            session.flush()
            return record

        return JSONResponse(await in_session(request, create), status_code=201)

    def read(session: Session, context: RequestContext) -> dict[str, Any]:
        ns = service.get_namespace(session, context, name)
        return {"resource_type_associations": list(ns.resource_types or [])}

    return JSONResponse(await in_session(request, read))


async def association(request: Request) -> Response:
    resource_type = str(request.path_params["resource_type"])
    await _edit(request, lambda ns: service.dissociate(ns, resource_type))
    return Response(status_code=204)


def _schema(name: str) -> Callable[[Request], Any]:
    async def handler(request: Request) -> Response:
        context_of(request)
        return JSONResponse(SCHEMAS[name])

    return handler


def routes() -> list[BaseRoute]:
    ns = BASE + "/{namespace}"
    every = ["GET", "POST", "DELETE"]
    one = ["GET", "PUT", "DELETE"]
    found: list[BaseRoute] = [
        Route(BASE, namespaces, methods=["GET", "POST"]),
        Route(ns, namespace, methods=one),
        Route(ns + "/properties", properties, methods=every),
        Route(ns + "/properties/{name}", property_, methods=one),
        Route(ns + "/objects", objects, methods=every),
        Route(ns + "/objects/{name}", object_, methods=one),
        Route(ns + "/tags", tags, methods=every),
        Route(ns + "/tags/{name}", tag, methods=["GET", "POST", "PUT", "DELETE"]),
        Route(ns + "/resource_types", associations, methods=["GET", "POST"]),
        Route(ns + "/resource_types/{resource_type}", association, methods=["DELETE"]),
        Route("/v2/metadefs/resource_types", resource_types, methods=["GET"]),
    ]
    found += [Route(f"/v2/schemas/metadefs/{name}", _schema(name), methods=["GET"])
              for name in SCHEMAS]
    return found
