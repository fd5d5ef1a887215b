"""Flavor extra specs, private flavors' project access, and flavor update (2.55).

Extra specs are stored on the flavor and copied into each server booted from it
(the server's embedded flavor shows them, as nova's instance flavor does).
"""

from __future__ import annotations

import re
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from kumo.api.context import RequestContext
from kumo.api.http import read_json
from kumo.api.parts import in_session, runtime_from
from kumo.compute import views
from kumo.compute.flavors import get_flavor
from kumo.compute.microversion import version_of
from kumo.compute.models import Flavor, FlavorAccess
from kumo.errors import BadRequest, Conflict, NotFound

_KEY = re.compile(r"^[\w.:\- ]{1,255}$")


def _spec_value(key: str, value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if not isinstance(value, str | int | float) or len(str(value)) > 255:
        raise BadRequest(f"Invalid input for field/attribute {key}: a string of at most "
                         "255 characters")
    return str(value)


def checked_specs(body: Any) -> dict[str, str]:
    specs = body.get("extra_specs") if isinstance(body, dict) else None
    if not isinstance(specs, dict):
        raise BadRequest("Invalid input: 'extra_specs' is a required property")
    checked = {}
    for key, value in specs.items():
        if not isinstance(key, str) or not _KEY.match(key):
            raise BadRequest(f"Invalid input for field/attribute extra_specs: key {key!r} "
                             "must be 1-255 letters, digits, spaces, '_', '-', '.' or ':'")
        checked[key] = _spec_value(key, value)
    return checked


def visible_flavor(session: Session, context: RequestContext, flavor_id: str) -> Flavor:
    """A flavor the caller may use: public, or private with access for its project."""
    flavor = get_flavor(session, flavor_id)
    if not flavor.is_public and not context.is_admin and session.get(
            FlavorAccess, (flavor.id, context.project_id)) is None:
        raise NotFound(f"Flavor {flavor_id} could not be found.")
    return flavor


def set_specs(session: Session, context: RequestContext, flavor_id: str,
              specs: dict[str, str]) -> dict[str, str]:
    context.require_admin()
    flavor = get_flavor(session, flavor_id)
    flavor.extra_specs = {**(flavor.extra_specs or {}), **specs}
    return specs


def delete_spec(session: Session, context: RequestContext, flavor_id: str, key: str) -> None:
    context.require_admin()
    flavor = get_flavor(session, flavor_id)
    specs = dict(flavor.extra_specs or {})
    if key not in specs:
        raise NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
    del specs[key]
    flavor.extra_specs = specs


def access_list(session: Session, flavor: Flavor) -> list[dict[str, str]]:
    if flavor.is_public:
        raise NotFound("Access list not available for public flavors.")
    rows = session.scalars(select(FlavorAccess).where(FlavorAccess.flavor_id == flavor.id)
                           .order_by(FlavorAccess.project_id))
    return [{"flavor_id": flavor.id, "tenant_id": r.project_id} for r in rows]


def change_access(session: Session, context: RequestContext, flavor_id: str, name: str,
                  args: Any) -> list[dict[str, str]]:
    context.require_admin()
    flavor = get_flavor(session, flavor_id)
    tenant = args.get("tenant") if isinstance(args, dict) else None
    if not isinstance(tenant, str) or not tenant or len(tenant) > 255:
        raise BadRequest(f"Invalid input: {name} needs a 'tenant'")
    if flavor.is_public:
        raise Conflict("Can not add access to a public flavor.")
    existing = session.get(FlavorAccess, (flavor.id, tenant))
    if name == "addTenantAccess":
        if existing is not None:
            raise Conflict(f"Flavor access already exists for flavor {flavor.id} and "
                           f"project {tenant} combination.")
        session.add(FlavorAccess(flavor_id=flavor.id, project_id=tenant))
    else:
        if existing is None:
            raise NotFound(f"Flavor access not found for {flavor.id} / {tenant} combination.")
        session.delete(existing)
    session.flush()
    return access_list(session, flavor)


# -- routes ---------------------------------------------------------------------

async def list_specs(request: Request) -> Response:
    flavor_id = request.path_params["flavor_id"]
    specs = await in_session(request, lambda s, c: dict(
        visible_flavor(s, c, flavor_id).extra_specs or {}))
    return JSONResponse({"extra_specs": specs})


async def create_specs(request: Request) -> Response:
    flavor_id, specs = request.path_params["flavor_id"], checked_specs(await read_json(request))
    shown = await in_session(request, lambda s, c: set_specs(s, c, flavor_id, specs))
    return JSONResponse({"extra_specs": shown})


async def spec_item(request: Request) -> Response:
    flavor_id, key = request.path_params["flavor_id"], request.path_params["key"]
    if request.method == "GET":
        specs = await in_session(request, lambda s, c: dict(
            visible_flavor(s, c, flavor_id).extra_specs or {}))
        if key not in specs:
            raise NotFound(f"Flavor {flavor_id} has no extra specs with key {key}.")
        return JSONResponse({key: specs[key]})
    if request.method == "DELETE":
        await in_session(request, lambda s, c: delete_spec(s, c, flavor_id, key))
        return Response(status_code=200)
    body = await read_json(request)
    if not isinstance(body, dict) or len(body) != 1 or key not in body:
        raise BadRequest("Request body and URI mismatch")
    specs = checked_specs({"extra_specs": body})
    shown = await in_session(request, lambda s, c: set_specs(s, c, flavor_id, specs))
    return JSONResponse(shown)


async def list_access(request: Request) -> Response:
    flavor_id = request.path_params["flavor_id"]

    def work(session: Session, context: RequestContext) -> list[dict[str, str]]:
        context.require_admin()
        return access_list(session, get_flavor(session, flavor_id))

    return JSONResponse({"flavor_access": await in_session(request, work)})


async def flavor_action(request: Request) -> Response:
    flavor_id, body = request.path_params["flavor_id"], await read_json(request)
    if not isinstance(body, dict) or len(body) != 1:
        raise BadRequest("Malformed request body: expected exactly one action")
    name, args = next(iter(body.items()))
    if name not in ("addTenantAccess", "removeTenantAccess"):
        raise BadRequest(f"There is no such action: {name}")
    shown = await in_session(request, lambda s, c: change_access(s, c, flavor_id, name, args))
    return JSONResponse({"flavor_access": shown})


async def update_flavor(request: Request) -> Response:
    """PUT /flavors/{id} (2.55): only the description changes."""
    flavor_id, body, mv = request.path_params["flavor_id"], await read_json(request), \
        version_of(request)
    if mv < (2, 55):
        raise NotFound("The resource could not be found.")
    spec = body.get("flavor") if isinstance(body, dict) else None
    if not isinstance(spec, dict) or set(spec) != {"description"}:
        raise BadRequest("Invalid input: the flavor update takes exactly 'description'")
    text = spec["description"]
    if text is not None and (not isinstance(text, str) or len(text) > 65535):
        raise BadRequest("Invalid input for field/attribute description")
    base = f"{runtime_from(request).settings.base_url}/compute/v2.1"

    def work(session: Session, context: RequestContext) -> dict[str, Any]:
        context.require_admin()
        flavor = get_flavor(session, flavor_id)
        flavor.description = text
        return views.flavor_view(flavor, base, mv)

    return JSONResponse({"flavor": await in_session(request, work)})


def routes(prefix: str) -> list[Route]:
    f = prefix + "/flavors/{flavor_id}"
    return [
        Route(f + "/os-extra_specs", list_specs),
        Route(f + "/os-extra_specs", create_specs, methods=["POST"]),
        Route(f + "/os-extra_specs/{key}", spec_item, methods=["GET", "PUT", "DELETE"]),
        Route(f + "/os-flavor-access", list_access),
        Route(f + "/action", flavor_action, methods=["POST"]),
        Route(f, update_flavor, methods=["PUT"]),
    ]
