"""`POST /v3/auth/tokens`: password and token authentication, project scope."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.errors import BadRequest, Unauthorized
from kumo.identity.models import Project, User
from kumo.identity.passwords import verify_password
from kumo.identity.tokens import TokenData, decode, issue, role_names

DEFAULT_DOMAIN = {"id": "default", "name": "Default"}


def _check_domain(ref: Any, what: str) -> None:
    """kumo has one domain, `Default` (id `default`); anything else is unknown."""
    if ref is None:
        return
    if not isinstance(ref, dict):
        raise BadRequest(f"{what} domain must be an object")
    if ref.get("id") not in (None, "default") or ref.get("name") not in (None, "Default"):
        raise Unauthorized(f"{what} domain {ref.get('id') or ref.get('name')!r} not found")


def _text(ref: dict[str, Any], key: str, where: str) -> str | None:
    """An optional string attribute of a request object; 400 for any other type."""
    value = ref.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"Invalid input for field '{where}.{key}': it must be a string")
    return value


def _password_user(session: Session, method: Any) -> User:
    if not isinstance(method, dict) or not isinstance(method.get("user"), dict):
        raise BadRequest("auth.identity.password.user is required")
    ref = method["user"]
    password = ref.get("password")
    if not isinstance(password, str):
        raise BadRequest("auth.identity.password.user.password is required")
    user_id = _text(ref, "id", "auth.identity.password.user")
    user_name = _text(ref, "name", "auth.identity.password.user")
    if user_id:
        user = session.get(User, user_id)
    elif user_name:
        _check_domain(ref.get("domain"), "user")
        user = session.scalar(select(User).where(User.name == user_name))
    else:
        raise BadRequest("auth.identity.password.user needs an id or a name")
    if user is None or not verify_password(password, user.password_hash):
        raise Unauthorized("The request you have made requires authentication.")
    if not user.enabled:
        raise Unauthorized("The user is disabled.")
    return user


def _scope_project(session: Session, scope: Any, user: User) -> Project:
    if scope is None:
        if user.default_project_id is None:
            raise Unauthorized("No scope given and the user has no default project.")
        project = session.get(Project, user.default_project_id)
    else:
        if not isinstance(scope, dict) or not isinstance(scope.get("project"), dict):
            raise BadRequest("kumo supports project scope only (auth.scope.project)")
        ref = scope["project"]
        project_id = _text(ref, "id", "auth.scope.project")
        project_name = _text(ref, "name", "auth.scope.project")
        if project_id:
            project = session.get(Project, project_id)
        elif project_name:
            _check_domain(ref.get("domain"), "project")
            project = session.scalar(select(Project).where(Project.name == project_name))
        else:
            raise BadRequest("auth.scope.project needs an id or a name")
    if project is None or not project.enabled:
        raise Unauthorized("The project to scope to was not found or is disabled.")
    if not role_names(session, user.id, project.id):
        raise Unauthorized(f"User {user.name} has no role on project {project.name}.")
    return project


def authenticate(session: Session, body: Any) -> tuple[str, TokenData]:
    """Check the credentials in a Keystone v3 auth body and issue a scoped token."""
    auth = body.get("auth") if isinstance(body, dict) else None
    identity = auth.get("identity") if isinstance(auth, dict) else None
    if not isinstance(identity, dict) or not isinstance(identity.get("methods"), list):
        raise BadRequest("auth.identity.methods is required")
    methods = identity["methods"]
    if "password" in methods:
        user = _password_user(session, identity.get("password"))
        used: tuple[str, ...] = ("password",)
    elif "token" in methods:
        ref = identity.get("token")
        if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
            raise BadRequest("auth.identity.token.id is required")
        old = decode(session, ref["id"])
        found = session.get(User, old.user_id)
        if found is None or not found.enabled:
            raise Unauthorized("The user of this token no longer exists or is disabled.")
        user, used = found, ("token", *(m for m in old.methods if m != "token"))
    else:
        raise Unauthorized(f"Unsupported auth methods {methods}; kumo supports password, token")
    project = _scope_project(session, auth.get("scope") if auth else None, user)
    return issue(session, user.id, project.id, used)
