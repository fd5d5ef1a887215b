"""Implied roles (`/v3/roles/{prior}/implies/{implied}`, `/v3/role_inferences`).

Holding a prior role brings the roles it implies, transitively (by default admin ->
member -> reader). Keystone's rules: no role implies itself or forms a cycle, and
`admin` is never implied (its `prohibited_implied_role` default).
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kumo.errors import Forbidden, NotFound
from kumo.identity import service
from kumo.identity.models import ImpliedRole, Role
from kumo.identity.policy import admin, as_json, caller, run, v3_url
from kumo.identity.tokens import expand_implied

PROHIBITED_IMPLIED = ("admin",)


def add_rule(session: Session, prior_id: str, implied_id: str) -> None:
    prior, implied = service.get_role(session, prior_id), service.get_role(session, implied_id)
    if implied.name in PROHIBITED_IMPLIED:
        raise Forbidden(f"{implied.name} may not be implied by another role.")
    if prior.id == implied.id or prior.name in expand_implied(session, [implied.name]):
        raise Forbidden(f"Implying {implied.name} from {prior.name} would form a cycle.")
    if session.get(ImpliedRole, (prior.id, implied.id)) is None:
        session.add(ImpliedRole(prior_role_id=prior.id, implied_role_id=implied.id))
        session.flush()


def get_rule(session: Session, prior_id: str, implied_id: str) -> ImpliedRole:
    service.get_role(session, prior_id)
    service.get_role(session, implied_id)
    rule = session.get(ImpliedRole, (prior_id, implied_id))
    if rule is None:
        raise NotFound(f"{prior_id} does not imply {implied_id}.")
    return rule


def _ref(role: Role, v3: str) -> dict[str, Any]:
    return {"id": role.id, "name": role.name, "links": {"self": f"{v3}/roles/{role.id}"}}


def _implied_by(session: Session, prior: Role, v3: str) -> list[dict[str, Any]]:
    rows = session.scalars(select(Role).join(ImpliedRole, ImpliedRole.implied_role_id == Role.id)
                           .where(ImpliedRole.prior_role_id == prior.id).order_by(Role.name))
    return [_ref(role, v3) for role in rows]


async def rule(request: Request) -> Response:
    prior_id, implied_id = request.path_params["prior_id"], request.path_params["implied_id"]
    v3 = v3_url(request)
    if request.method == "DELETE":
        admin(request, "delete_implied_role")
        await run(request, lambda s: s.delete(get_rule(s, prior_id, implied_id)))
        return Response(status_code=204)
    if request.method == "PUT":
        admin(request, "create_implied_role")
        await run(request, lambda s: add_rule(s, prior_id, implied_id))
    else:
        caller(request)
        await run(request, lambda s: get_rule(s, prior_id, implied_id))
        if request.method == "HEAD":
            return Response(status_code=204)

    def show(session: Session) -> dict[str, Any]:
        prior = service.get_role(session, prior_id)
        implied = service.get_role(session, implied_id)
        return {"role_inference": {"prior_role": _ref(prior, v3), "implies": _ref(implied, v3)},
                "links": {"self": f"{v3}/roles/{prior_id}/implies/{implied_id}"}}

    return as_json(await run(request, show), 201 if request.method == "PUT" else 200)


async def implied_by(request: Request) -> Response:
    caller(request)
    prior_id, v3 = request.path_params["prior_id"], v3_url(request)

    def show(session: Session) -> dict[str, Any]:
        prior = service.get_role(session, prior_id)
        return {"role_inference": {"prior_role": _ref(prior, v3),
                                   "implies": _implied_by(session, prior, v3)},
                "links": {"self": f"{v3}/roles/{prior_id}/implies"}}

    return as_json(await run(request, show))


async def all_rules(request: Request) -> Response:
    caller(request)
    v3 = v3_url(request)

    def listing(session: Session) -> list[dict[str, Any]]:
        priors = session.scalars(select(Role).where(Role.id.in_(
            select(ImpliedRole.prior_role_id))).order_by(Role.name))
        return [{"prior_role": _ref(p, v3), "implies": _implied_by(session, p, v3)}
                for p in priors]

    return as_json({"role_inferences": await run(request, listing),
                    "links": {"self": str(request.url)}})


def routes() -> list[BaseRoute]:
    return [
        Route("/v3/role_inferences", all_rules, methods=["GET"]),
        Route("/v3/roles/{prior_id}/implies", implied_by, methods=["GET"]),
        Route("/v3/roles/{prior_id}/implies/{implied_id}", rule,
              methods=["PUT", "GET", "HEAD", "DELETE"]),
    ]
