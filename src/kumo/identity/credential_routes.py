"""Application credentials, credentials and EC2 credentials over HTTP."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.orm import Session
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from kumo.api.http import read_json
from kumo.errors import BadRequest
from kumo.identity import credentials, schema, views
from kumo.identity.models import ApplicationCredential, Credential
from kumo.identity.policy import as_json, caller, run, self_or_admin, v3_url

# ---- application credentials ----------------------------------------------------------


def _expiry(moment: datetime | None) -> str | None:
    """As Keystone shows it: naive UTC ISO 8601, to the microsecond given."""
    if moment is None:
        return None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.replace(tzinfo=None).isoformat()


def app_cred_view(session: Session, row: ApplicationCredential, v3: str,
                  secret: str | None = None) -> dict[str, Any]:
    view: dict[str, Any] = {
        "id": row.id,
        "name": row.name,
        "description": row.description or None,
        "user_id": row.user_id,
        "project_id": row.project_id,
        "expires_at": _expiry(row.expires_at),
        "unrestricted": row.unrestricted,
        "roles": [{"id": r.id, "name": r.name, "domain_id": None}
                  for r in credentials.app_credential_roles(session, row)],
        "access_rules": [],
        "links": {"self": f"{v3}/users/{row.user_id}/application_credentials/{row.id}"},
    }
    if secret is not None:
        view["secret"] = secret
    return view


async def app_credentials(request: Request) -> Response:
    user_id, v3 = request.path_params["user_id"], v3_url(request)
    if request.method == "POST":
        context = caller(request)
        body = schema.object_under(await read_json(request), "application_credential")

        def create(session: Session) -> dict[str, Any]:
            row, secret = credentials.create_app_credential(session, context, user_id, body)
            return app_cred_view(session, row, v3, secret)

        return as_json({"application_credential": await run(request, create)}, 201)
    self_or_admin(request, user_id, "list_application_credentials")
    name = request.query_params.get("name")

    def work(session: Session) -> list[dict[str, Any]]:
        return [app_cred_view(session, row, v3)
                for row in credentials.list_app_credentials(session, user_id, name)]

    document = views.collection("application_credentials", await run(request, work),
                                str(request.url))
    return as_json(document)


async def app_credential(request: Request) -> Response:
    user_id, v3 = request.path_params["user_id"], v3_url(request)
    credential_id = request.path_params["credential_id"]
    context = self_or_admin(request, user_id, "get_application_credential")
    if request.method == "DELETE":
        await run(request, lambda s: credentials.delete_app_credential(
            s, context, user_id, credential_id))
        return Response(status_code=204)

    def show(session: Session) -> dict[str, Any]:
        return app_cred_view(
            session, credentials.get_app_credential(session, user_id, credential_id), v3)

    return as_json({"application_credential": await run(request, show)})


# ---- credentials ----------------------------------------------------------------------


def credential_view(row: Credential, v3: str) -> dict[str, Any]:
    return {**(row.extra or {}), "id": row.id, "type": row.type, "blob": row.blob,
            "user_id": row.user_id, "project_id": row.project_id,
            "links": {"self": f"{v3}/credentials/{row.id}"}}


def credential_fields(body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for key in ("type", "blob", "user_id"):
        if key in body:
            if not isinstance(body[key], str) or not body[key]:
                raise BadRequest(f"Invalid input for field '{key}': a non-empty string.")
            fields[key] = body[key]
        elif creating:
            raise BadRequest(f"Invalid input for field '{key}': '{key}' is a required property.")
    if "project_id" in body:
        if body["project_id"] is not None and not isinstance(body["project_id"], str):
            raise BadRequest("Invalid input for field 'project_id': a string.")
        fields["project_id"] = body["project_id"]
    extra = {k: v for k, v in body.items()
             if k not in {"type", "blob", "user_id", "project_id", "id", "links"}}
    if extra:
        fields["extra"] = extra
    return fields


async def credentials_collection(request: Request) -> Response:
    context, v3 = caller(request), v3_url(request)
    if request.method == "POST":
        fields = credential_fields(schema.object_under(await read_json(request), "credential"),
                                   creating=True)

        def create(session: Session) -> dict[str, Any]:
            return credential_view(credentials.create_credential(session, context, fields), v3)

        return as_json({"credential": await run(request, create)}, 201)
    filters = {k: request.query_params[k] for k in ("user_id", "type")
               if k in request.query_params}

    def work(session: Session) -> list[dict[str, Any]]:
        return [credential_view(row, v3)
                for row in credentials.visible_credentials(session, context, filters)]

    return as_json(views.collection("credentials", await run(request, work), str(request.url)))


async def credential(request: Request) -> Response:
    context, v3 = caller(request), v3_url(request)
    credential_id = request.path_params["credential_id"]
    if request.method == "DELETE":
        await run(request, lambda s: credentials.delete_credential(s, context, credential_id))
        return Response(status_code=204)
    if request.method == "PATCH":
        fields = credential_fields(schema.object_under(await read_json(request), "credential"),
                                   creating=False)

        def change(session: Session) -> dict[str, Any]:
            return credential_view(
                credentials.update_credential(session, context, credential_id, fields), v3)

        return as_json({"credential": await run(request, change)})

    def show(session: Session) -> dict[str, Any]:
        return credential_view(credentials.get_credential(session, context, credential_id), v3)

    return as_json({"credential": await run(request, show)})


# ---- EC2 ------------------------------------------------------------------------------


def ec2_view(row: Credential, v3: str) -> dict[str, Any]:
    blob = json.loads(row.blob)
    return {"user_id": row.user_id, "tenant_id": row.project_id, "access": blob["access"],
            "secret": blob["secret"], "trust_id": blob.get("trust_id"),
            "links": {"self": f"{v3}/users/{row.user_id}/credentials/OS-EC2/{blob['access']}"}}


async def ec2_collection(request: Request) -> Response:
    user_id, v3 = request.path_params["user_id"], v3_url(request)
    context = self_or_admin(request, user_id, "ec2_credentials")
    if request.method == "POST":
        body = await read_json(request)
        project_id = body.get("tenant_id") if isinstance(body, dict) else None

        def create(session: Session) -> dict[str, Any]:
            return ec2_view(credentials.create_ec2(session, context, user_id, project_id), v3)

        return as_json({"credential": await run(request, create)}, 201)

    def work(session: Session) -> list[dict[str, Any]]:
        return [ec2_view(row, v3) for row in credentials.list_ec2(session, context, user_id)]

    return as_json(views.collection("credentials", await run(request, work), str(request.url)))


async def ec2_credential(request: Request) -> Response:
    user_id, access = request.path_params["user_id"], request.path_params["access"]
    context, v3 = self_or_admin(request, user_id, "ec2_credentials"), v3_url(request)
    if request.method == "DELETE":
        def remove(session: Session) -> None:
            row = credentials.get_ec2(session, context, user_id, access)
            credentials.delete_credential(session, context, row.id)

        await run(request, remove)
        return Response(status_code=204)

    def show(session: Session) -> dict[str, Any]:
        return ec2_view(credentials.get_ec2(session, context, user_id, access), v3)

    return as_json({"credential": await run(request, show)})


def routes() -> list[BaseRoute]:
    app_creds = "/v3/users/{user_id}/application_credentials"
    ec2 = "/v3/users/{user_id}/credentials/OS-EC2"
    return [
        Route(app_creds, app_credentials, methods=["GET", "POST"]),
        Route(app_creds + "/{credential_id}", app_credential, methods=["GET", "DELETE"]),
        Route("/v3/credentials", credentials_collection, methods=["GET", "POST"]),
        Route("/v3/credentials/{credential_id}", credential,
              methods=["GET", "PATCH", "DELETE"]),
        Route(ec2, ec2_collection, methods=["GET", "POST"]),
        Route(ec2 + "/{access}", ec2_credential, methods=["GET", "DELETE"]),
    ]
