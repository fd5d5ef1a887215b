"""`POST /v3/auth/tokens`: password, token and application credential methods; scopes.

Scope: a project (by id, or by name with its domain), a domain (by id or name), the
system (`{"system": {"all": true}}`), `"unscoped"`, or nothing: then the user's default
project when they hold a role there, else an unscoped token (as Keystone does).
An application credential always scopes to its own project.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.errors import BadRequest, Unauthorized
from kumo.identity.models import ApplicationCredential, Domain, Project, User
from kumo.identity.passwords import verify_password
from kumo.identity.tokens import (
    UNSCOPED,
    Scope,
    TokenData,
    check_scope_target,
    decode,
    issue,
    scope_role_names,
)

DEFAULT_DOMAIN = {"id": "default", "name": "Default"}
_AUTH_FAILED = "The request you have made requires authentication."


def _text(ref: dict[str, Any], key: str, where: str) -> str | None:
    """An optional string attribute of a request object; 400 for any other type."""
    value = ref.get(key)
    if value is not None and not isinstance(value, str):
        raise BadRequest(f"Invalid input for field '{where}.{key}': it must be a string")
    return value


def find_domain(session: Session, ref: Any, what: str) -> Domain:
    """A domain named by `{"id": …}` or `{"name": …}`; 401 if there is none (no leaks)."""
    if not isinstance(ref, dict):
        raise BadRequest(f"{what} domain must be an object with an id or a name")
    domain_id, name = _text(ref, "id", f"{what}.domain"), _text(ref, "name", f"{what}.domain")
    if domain_id:
        domain = session.get(Domain, domain_id)
    elif name:
        domain = session.scalar(select(Domain).where(Domain.name == name))
    else:
        raise BadRequest(f"{what} domain needs an id or a name")
    if domain is None:
        raise Unauthorized(f"Could not find domain: {domain_id or name}.")
    if not domain.enabled:
        raise Unauthorized(f"Domain {domain.name} is disabled.")
    return domain


def _user_by_ref(session: Session, ref: Any, what: str) -> User | None:
    if not isinstance(ref, dict):
        raise BadRequest(f"{what} must be an object")
    user_id, name = _text(ref, "id", what), _text(ref, "name", what)
    if user_id:
        return session.get(User, user_id)
    if name:
        if "domain" not in ref:
            raise BadRequest(f"{what} given by name needs its domain")
        domain = find_domain(session, ref["domain"], "user")
        return session.scalar(select(User).where(User.name == name,
                                                 User.domain_id == domain.id))
    raise BadRequest(f"{what} needs an id or a name")


def _check_enabled(session: Session, user: User) -> None:
    if not user.enabled:
        raise Unauthorized("The user is disabled.")
    domain = session.get(Domain, user.domain_id)
    if domain is not None and not domain.enabled:
        raise Unauthorized("The user's domain is disabled.")


def _password_user(session: Session, method: Any) -> User:
    if not isinstance(method, dict) or not isinstance(method.get("user"), dict):
        raise BadRequest("auth.identity.password.user is required")
    ref = method["user"]
    password = ref.get("password")
    if not isinstance(password, str):
        raise BadRequest("auth.identity.password.user.password is required")
    user = _user_by_ref(session, ref, "auth.identity.password.user")
    if user is None or not verify_password(password, user.password_hash):
        raise Unauthorized(_AUTH_FAILED)
    _check_enabled(session, user)
    return user


def _app_credential(session: Session, method: Any) -> ApplicationCredential:
    if not isinstance(method, dict) or not isinstance(method.get("secret"), str):
        raise BadRequest("auth.identity.application_credential needs an id (or a name "
                         "and its user) and a secret")
    if method.get("id"):
        credential = session.get(ApplicationCredential, method["id"])
    elif method.get("name"):
        user = _user_by_ref(session, method.get("user"), "application_credential.user")
        credential = None if user is None else session.scalar(
            select(ApplicationCredential).where(ApplicationCredential.user_id == user.id,
                                                ApplicationCredential.name == method["name"]))
    else:
        raise BadRequest("auth.identity.application_credential needs an id or a name")
    if credential is None or not verify_password(method["secret"], credential.secret_hash):
        raise Unauthorized(_AUTH_FAILED)
    expires = credential.expires_at
    if expires is not None:
        expires = expires if expires.tzinfo else expires.replace(tzinfo=UTC)
        if expires <= datetime.now(UTC):
            raise Unauthorized("The application credential has expired.")
    return credential


def _requested_scope(session: Session, scope: Any, user: User) -> Scope:
    if scope is None:
        default = user.default_project_id
        if default is not None:
            candidate = Scope(project_id=default)
            try:
                check_scope_target(session, candidate)
            except Unauthorized:
                return UNSCOPED
            if scope_role_names(session, user.id, candidate):
                return candidate
        return UNSCOPED
    if scope == "unscoped":
        return UNSCOPED
    if not isinstance(scope, dict) or len(scope) != 1:
        raise BadRequest("auth.scope names one of project, domain or system")
    if isinstance(scope.get("project"), dict):
        ref = scope["project"]
        project_id = _text(ref, "id", "auth.scope.project")
        project_name = _text(ref, "name", "auth.scope.project")
        if project_id:
            project = session.get(Project, project_id)
        elif project_name:
            if "domain" not in ref:
                raise BadRequest("auth.scope.project given by name needs its domain")
            domain = find_domain(session, ref["domain"], "project")
            project = session.scalar(select(Project).where(Project.name == project_name,
                                                           Project.domain_id == domain.id))
        else:
            raise BadRequest("auth.scope.project needs an id or a name")
        if project is None:
            raise Unauthorized("The project to scope to was not found.")
        return Scope(project_id=project.id)
    if isinstance(scope.get("domain"), dict):
        return Scope(domain_id=find_domain(session, scope["domain"], "scope").id)
    if isinstance(scope.get("system"), dict):
        if scope["system"].get("all") is not True:
            raise BadRequest('auth.scope.system must be {"all": true}')
        return Scope(system=True)
    raise BadRequest("auth.scope names one of project, domain or system")


def authenticate(session: Session, body: Any) -> tuple[str, TokenData]:
    """Check the credentials in a Keystone v3 auth body and issue a token for the scope."""
    auth = body.get("auth") if isinstance(body, dict) else None
    identity = auth.get("identity") if isinstance(auth, dict) else None
    if not isinstance(identity, dict) or not isinstance(identity.get("methods"), list):
        raise BadRequest("auth.identity.methods is required")
    methods = identity["methods"]
    scope_ref = auth.get("scope") if auth else None
    if "application_credential" in methods:
        credential = _app_credential(session, identity.get("application_credential"))
        found = session.get(User, credential.user_id)
        if found is None:
            raise Unauthorized(_AUTH_FAILED)
        _check_enabled(session, found)
        if scope_ref is not None:
            raise Unauthorized("An application credential's token is scoped to its own "
                               "project; send no scope.")
        scope = Scope(project_id=credential.project_id)
        return _issue_checked(session, found, scope, ("application_credential",),
                              app_cred_id=credential.id)
    if "password" in methods:
        user = _password_user(session, identity.get("password"))
        return _issue_checked(session, user, _requested_scope(session, scope_ref, user),
                              ("password",))
    if "token" in methods:
        ref = identity.get("token")
        if not isinstance(ref, dict) or not isinstance(ref.get("id"), str):
            raise BadRequest("auth.identity.token.id is required")
        old = decode(session, ref["id"])
        found = session.get(User, old.user_id)
        if found is None:
            raise Unauthorized("The user of this token no longer exists or is disabled.")
        _check_enabled(session, found)
        if old.app_cred_id is not None:
            raise Unauthorized("A token from an application credential cannot be rescoped.")
        used = ("token", *(m for m in old.methods if m != "token"))
        # Rescoping keeps the original expiry (a token cannot extend its own life).
        return _issue_checked(session, found, _requested_scope(session, scope_ref, found),
                              used, expires_at=old.expires_at)
    raise Unauthorized(f"Unsupported auth methods {methods}; kumo supports password, token "
                       "and application_credential")


def _issue_checked(session: Session, user: User, scope: Scope, methods: tuple[str, ...],
                   *, app_cred_id: str | None = None,
                   expires_at: datetime | None = None) -> tuple[str, TokenData]:
    check_scope_target(session, scope)
    if not scope.unscoped and not scope_role_names(session, user.id, scope):
        raise Unauthorized(f"User {user.name} has no role on the requested scope.")
    return issue(session, user.id, scope, methods, app_cred_id=app_cred_id,
                 expires_at=expires_at)
