"""Keystone's policy API (`/v3/policies`): typed blobs an admin stores for services to fetch.

As in Keystone, kumo only keeps them: its own authorization does not read them.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kumo.api.http import read_json
from kumo.errors import BadRequest, NotFound
from kumo.identity import schema, views
from kumo.identity.models import PolicyBlob
from kumo.identity.policy import admin, as_json, caller, run, v3_url


def _view(row: PolicyBlob, v3: str) -> dict[str, Any]:
    return {**(row.extra or {}), "id": row.id, "type": row.type, "blob": row.blob,
            "links": {"self": f"{v3}/policies/{row.id}"}}


def _fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in ("type", "blob"):
        if key in body:
            if not isinstance(body[key], str):
                raise BadRequest(f"Invalid input for field '{key}': a string.")
            fields[key] = body[key]
        elif creating:
            raise BadRequest(f"Invalid input for field '{key}': '{key}' is a required property.")
    extra = {k: v for k, v in body.items() if k not in ("type", "blob", "id", "links")}
    if extra:
        fields["extra"] = extra
    return fields


def _get(session: Session, policy_id: str) -> PolicyBlob:
    row = session.get(PolicyBlob, policy_id)
    if row is None:
        raise NotFound(f"Could not find policy: {policy_id}.")
    return row


async def policies(request: Request) -> Response:
    v3 = v3_url(request)
    if request.method == "POST":
        admin(request, "create_policy")
        fields = _fields(schema.object_under(await read_json(request), "policy"), creating=True)

        def create(session: Session) -> dict[str, Any]:
            row = PolicyBlob(**fields)
            session.add(row)
            session.flush()
            return _view(row, v3)

        return as_json({"policy": await run(request, create)}, 201)
    caller(request)
    kind = request.query_params.get("type")

    def listing(session: Session) -> list[dict[str, Any]]:
        query = select(PolicyBlob).order_by(PolicyBlob.id)
        if kind is not None:
            query = query.where(PolicyBlob.type == kind)
        return [_view(row, v3) for row in session.scalars(query)]

    return as_json(views.collection("policies", await run(request, listing), str(request.url)))


async def policy(request: Request) -> Response:
    policy_id, v3 = request.path_params["policy_id"], v3_url(request)
    if request.method == "DELETE":
        admin(request, "delete_policy")
        await run(request, lambda s: s.delete(_get(s, policy_id)))
        return Response(status_code=204)
    if request.method == "PATCH":
        admin(request, "update_policy")
        fields = _fields(schema.object_under(await read_json(request), "policy"), creating=False)

        def change(session: Session) -> dict[str, Any]:
            row = _get(session, policy_id)
            extra = fields.pop("extra", None)
            for key, value in fields.items():
                setattr(row, key, value)
            if extra:
                row.extra = {**(row.extra or {}), **extra}
            return _view(row, v3)

        return as_json({"policy": await run(request, change)})
    caller(request)
    return as_json({"policy": await run(request, lambda s: _view(_get(s, policy_id), v3))})


def routes() -> list[BaseRoute]:
    return [
        Route("/v3/policies", policies, methods=["GET", "POST"]),
        Route("/v3/policies/{policy_id}", policy, methods=["GET", "PATCH", "DELETE"]),
    ]
