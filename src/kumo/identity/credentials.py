"""Application credentials, and Keystone's credential store (EC2 keys included).

An application credential lets a program (a CI farm, a backup job) log in as its user
on one project without the user's password, with the roles it was given (a subset of
the user's roles there, checked again at every request). Its secret is shown once, at
creation; kumo keeps only a scrypt hash of it.
"""

from __future__ import annotations

import hashlib
import json
import secrets
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.errors import BadRequest, Conflict, Forbidden, NotFound
from kumo.identity.models import ApplicationCredential, Credential, Project, Role, User
from kumo.identity.passwords import hash_password
from kumo.identity.tokens import Scope, granted_roles, scope_role_names

EC2 = "ec2"


def _user(session: Session, user_id: str) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"Could not find user: {user_id}.")
    return user


# ---- application credentials ----------------------------------------------------------


def parse_expiry(value: Any) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise BadRequest("Invalid input for field 'expires_at': an ISO 8601 time.")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise BadRequest(f"Invalid input for field 'expires_at': {value!r}.") from None
    moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    if moment <= datetime.now(UTC):
        raise BadRequest("Invalid input for field 'expires_at': the time has passed.")
    return moment


def create_app_credential(session: Session, context: RequestContext, user_id: str,
                          body: dict[str, Any]) -> tuple[ApplicationCredential, str]:
    """A new application credential of `user_id` for the caller's project; (row, secret)."""
    if user_id != context.user_id:
        raise Forbidden("You are not authorized to perform the requested action: "
                        "identity:create_application_credential.")
    if context.app_cred_id:
        credential = session.get(ApplicationCredential, context.app_cred_id)
        if credential is None or not credential.unrestricted:
            raise Forbidden("A restricted application credential cannot create another one.")
    if not context.project_id:
        raise Forbidden("Application credentials need a project-scoped token.")
    name = body.get("name")
    if not isinstance(name, str) or not 1 <= len(name) <= 255:
        raise BadRequest("Invalid input for field 'name': 1 to 255 characters required.")
    if body.get("access_rules"):
        raise BadRequest("Invalid input for field 'access_rules': kumo does not support "
                         "application credential access rules.")
    if session.scalar(select(ApplicationCredential.id).where(
            ApplicationCredential.user_id == user_id, ApplicationCredential.name == name)):
        raise Conflict(f"Conflict occurred attempting to store application_credential - "
                       f"Duplicate entry found with name {name}.")
    # The roles the user holds there, implied ones included (member brings reader).
    names = scope_role_names(session, user_id, Scope(project_id=context.project_id))
    held = list(session.scalars(select(Role).where(Role.name.in_(names)).order_by(Role.name)))
    if body.get("roles") is None:
        direct = {r.id for r in granted_roles(session, user_id,
                                               Scope(project_id=context.project_id))}
        held_default = [r for r in held if r.id in direct]
        body = {**body, "roles": [{"id": r.id} for r in held_default]}
    roles = _requested_roles(session, body.get("roles"), held)
    secret = body.get("secret") or secrets.token_urlsafe(64)
    if not isinstance(secret, str):
        raise BadRequest("Invalid input for field 'secret': a string.")
    unrestricted = body.get("unrestricted", False)
    if not isinstance(unrestricted, bool):
        raise BadRequest("Invalid input for field 'unrestricted': a boolean.")
    description = body.get("description") or ""
    if not isinstance(description, str):
        raise BadRequest("Invalid input for field 'description': a string.")
    credential = ApplicationCredential(
        name=name, user_id=user_id, project_id=context.project_id, description=description,
        secret_hash=hash_password(secret), expires_at=parse_expiry(body.get("expires_at")),
        unrestricted=unrestricted, role_ids=[r.id for r in roles])
    session.add(credential)
    session.flush()
    return credential, secret


def _requested_roles(session: Session, wanted: Any, held: list[Role]) -> list[Role]:
    if wanted is None:
        return held
    if not isinstance(wanted, list):
        raise BadRequest("Invalid input for field 'roles': a list of {id} or {name}.")
    by_id = {r.id: r for r in held}
    by_name = {r.name: r for r in held}
    chosen: list[Role] = []
    for ref in wanted:
        role = None
        if isinstance(ref, dict) and ref.get("id"):
            role = by_id.get(ref["id"])
        elif isinstance(ref, dict) and ref.get("name"):
            role = by_name.get(ref["name"])
        else:
            raise BadRequest("Invalid input for field 'roles': each role is {id} or {name}.")
        if role is None:
            raise Forbidden(f"You do not hold the role {ref} on this project, so an "
                            "application credential cannot have it.")
        if role not in chosen:
            chosen.append(role)
    return chosen


def app_credential_roles(session: Session, credential: ApplicationCredential) -> list[Role]:
    return list(session.scalars(select(Role).where(Role.id.in_(credential.role_ids))
                                .order_by(Role.name)))


def list_app_credentials(session: Session, user_id: str,
                         name: str | None) -> list[ApplicationCredential]:
    _user(session, user_id)
    query = select(ApplicationCredential).where(ApplicationCredential.user_id == user_id)
    if name is not None:
        query = query.where(ApplicationCredential.name == name)
    return list(session.scalars(query.order_by(ApplicationCredential.name)))


def get_app_credential(session: Session, user_id: str, credential_id: str
                       ) -> ApplicationCredential:
    credential = session.get(ApplicationCredential, credential_id)
    if credential is None or credential.user_id != user_id:
        raise NotFound(f"Could not find Application Credential: {credential_id}.")
    return credential


def delete_app_credential(session: Session, context: RequestContext, user_id: str,
                          credential_id: str) -> None:
    credential = get_app_credential(session, user_id, credential_id)
    if context.app_cred_id:
        current = session.get(ApplicationCredential, context.app_cred_id)
        if current is None or not current.unrestricted:
            raise Forbidden("A restricted application credential cannot delete one.")
    session.delete(credential)
    session.flush()


# ---- credentials (and EC2) ------------------------------------------------------------


def ec2_id(access: str) -> str:
    """Keystone names an EC2 credential by the SHA-256 of its access key."""
    return hashlib.sha256(access.encode()).hexdigest()


def _ec2_access(blob: str) -> str:
    try:
        document = json.loads(blob)
    except ValueError:
        raise BadRequest("Invalid blob in credential: an ec2 blob is JSON.") from None
    access = document.get("access") if isinstance(document, dict) else None
    if not isinstance(access, str) or not access:
        raise BadRequest("Invalid blob in credential: an ec2 blob needs an access key.")
    return access


def create_credential(session: Session, context: RequestContext,
                      fields: dict[str, Any]) -> Credential:
    user_id = fields["user_id"]
    if not context.is_admin and user_id != context.user_id:
        raise Forbidden("You are not authorized to perform the requested action: "
                        "identity:create_credential.")
    _user(session, user_id)
    project_id = fields.get("project_id")
    if project_id is not None and session.get(Project, project_id) is None:
        raise BadRequest(f"Invalid input: no project {project_id}.")
    credential_id = None
    if fields["type"] == EC2:
        if project_id is None:
            raise BadRequest("Invalid input: an ec2 credential needs a project_id.")
        credential_id = ec2_id(_ec2_access(fields["blob"]))
        if session.get(Credential, credential_id) is not None:
            raise Conflict("Conflict occurred attempting to store credential - Duplicate ID, "
                           f"{credential_id}.")
    credential = Credential(**fields)
    if credential_id:
        credential.id = credential_id
    session.add(credential)
    session.flush()
    return credential


def visible_credentials(session: Session, context: RequestContext,
                        filters: dict[str, str]) -> list[Credential]:
    query = select(Credential).order_by(Credential.id)
    if not context.is_admin:
        query = query.where(Credential.user_id == context.user_id)
    if "user_id" in filters:
        query = query.where(Credential.user_id == filters["user_id"])
    if "type" in filters:
        query = query.where(Credential.type == filters["type"])
    return list(session.scalars(query))


def get_credential(session: Session, context: RequestContext, credential_id: str) -> Credential:
    credential = session.get(Credential, credential_id)
    if credential is None or (not context.is_admin and credential.user_id != context.user_id):
        raise NotFound(f"Could not find credential: {credential_id}.")
    return credential


def update_credential(session: Session, context: RequestContext, credential_id: str,
                      fields: dict[str, Any]) -> Credential:
    credential = get_credential(session, context, credential_id)
    if "user_id" in fields and not context.is_admin and fields["user_id"] != context.user_id:
        raise Forbidden("You are not authorized to perform the requested action: "
                        "identity:update_credential.")
    if fields.get("type", credential.type) == EC2 and "blob" in fields:
        _ec2_access(fields["blob"])  # still an ec2 blob; the id stays what it was
    for key, value in fields.items():
        setattr(credential, key, value)
    session.flush()
    return credential


def delete_credential(session: Session, context: RequestContext, credential_id: str) -> None:
    session.delete(get_credential(session, context, credential_id))
    session.flush()


def create_ec2(session: Session, context: RequestContext, user_id: str,
               project_id: Any) -> Credential:
    """`POST /v3/users/{u}/credentials/OS-EC2 {"tenant_id": p}`: a new access/secret pair."""
    if not isinstance(project_id, str) or not project_id:
        raise BadRequest("Invalid input: tenant_id (the project) is required.")
    if session.get(Project, project_id) is None:
        raise NotFound(f"Could not find project: {project_id}.")
    access, secret = secrets.token_hex(16), secrets.token_hex(16)
    blob = json.dumps({"access": access, "secret": secret, "trust_id": None})
    return create_credential(session, context, {"user_id": user_id, "project_id": project_id,
                                                "type": EC2, "blob": blob})


def list_ec2(session: Session, context: RequestContext, user_id: str) -> list[Credential]:
    return visible_credentials(session, context, {"user_id": user_id, "type": EC2})


def get_ec2(session: Session, context: RequestContext, user_id: str, access: str) -> Credential:
    credential = session.get(Credential, ec2_id(access))
    if (credential is None or credential.type != EC2 or credential.user_id != user_id
            or (not context.is_admin and credential.user_id != context.user_id)):
        raise NotFound(f"Could not find credential: {ec2_id(access)}.")
    return credential
