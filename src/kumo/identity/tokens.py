"""Keystone-style tokens: Fernet-encrypted, self-contained, checked against the database.

A token carries who, its scope (a project, a domain, the system, or none: unscoped),
the application credential it came from if any, when it was issued and when it
expires. On each request the user, the scope's target and the role assignments are
read fresh, so disabling a user or removing a role takes effect at once;
`DELETE /v3/auth/tokens` revokes one token.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import ColumnElement, and_, or_, select
from sqlalchemy.orm import Session, aliased

from kumo.api.context import RequestContext
from kumo.db.base import utcnow
from kumo.errors import Unauthorized
from kumo.identity.keys import shared_key
from kumo.identity.models import (
    ApplicationCredential,
    Domain,
    GroupMember,
    ImpliedRole,
    Project,
    RevokedToken,
    Role,
    RoleAssignment,
    User,
)

TOKEN_TTL = timedelta(hours=1)  # keystone's [token] expiration default
_KEY_NAME = "fernet_key"
SYSTEM_ALL = "all"


@dataclass(frozen=True)
class Scope:
    """What a token is scoped to: at most one of project, domain, system."""

    project_id: str | None = None
    domain_id: str | None = None
    system: bool = False

    @property
    def unscoped(self) -> bool:
        return self.project_id is None and self.domain_id is None and not self.system


UNSCOPED = Scope()


@dataclass(frozen=True)
class TokenData:
    token_id: str
    user_id: str
    project_id: str | None
    methods: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime
    domain_id: str | None = None
    system: bool = False
    app_cred_id: str | None = None

    @property
    def scope(self) -> Scope:
        return Scope(self.project_id, self.domain_id, self.system)


def signing_key(session: Session) -> Fernet:
    """The token key, created on first use and shared by all API processes via the db."""
    return Fernet(shared_key(session, _KEY_NAME, lambda: Fernet.generate_key().decode()))


def issue(
    session: Session,
    user_id: str,
    scope: Scope | str | None = None,
    methods: tuple[str, ...] = ("password",),
    *,
    now: datetime | None = None,
    ttl: timedelta = TOKEN_TTL,
    expires_at: datetime | None = None,
    app_cred_id: str | None = None,
) -> tuple[str, TokenData]:
    """A new token for `user_id`; `scope` may be a project id (the common case).

    `expires_at` keeps an earlier token's expiry when a token is rescoped, as Keystone does.
    """
    if isinstance(scope, str) or scope is None:
        scope = Scope(project_id=scope)
    # Sub-second precision, so a password change invalidates tokens issued just before it.
    issued = now or datetime.now(UTC)
    data = TokenData(
        token_id=secrets.token_hex(16),
        user_id=user_id,
        project_id=scope.project_id,
        methods=methods,
        issued_at=issued,
        expires_at=expires_at or issued + ttl,
        domain_id=scope.domain_id,
        system=scope.system,
        app_cred_id=app_cred_id,
    )
    payload = {
        "t": data.token_id,
        "u": user_id,
        "p": scope.project_id,
        "d": scope.domain_id,
        "s": scope.system,
        "a": app_cred_id,
        "m": list(methods),
        "i": issued.timestamp(),
        "e": int(data.expires_at.timestamp()),
    }
    token = signing_key(session).encrypt(json.dumps(payload).encode()).decode()
    return token, data


def decode(session: Session, token: str, *, now: datetime | None = None) -> TokenData:
    """The token's content if it is genuine, unexpired and not revoked; else Unauthorized."""
    try:
        payload = json.loads(signing_key(session).decrypt(token.encode()))
    except (InvalidToken, ValueError):
        raise Unauthorized("The request you have made requires authentication.") from None
    data = TokenData(
        token_id=payload["t"],
        user_id=payload["u"],
        project_id=payload.get("p"),
        methods=tuple(payload["m"]),
        issued_at=datetime.fromtimestamp(payload["i"], UTC),
        expires_at=datetime.fromtimestamp(payload["e"], UTC),
        domain_id=payload.get("d"),
        system=bool(payload.get("s")),
        app_cred_id=payload.get("a"),
    )
    if (now or utcnow()) >= data.expires_at:
        raise Unauthorized("The token has expired.")
    if session.get(RevokedToken, data.token_id) is not None:
        raise Unauthorized("The token has been revoked.")
    return data


def group_ids_of(session: Session, user_id: str) -> list[str]:
    return list(session.scalars(select(GroupMember.group_id).where(
        GroupMember.user_id == user_id)))


def _assigned(user_id: str, scope: Scope) -> ColumnElement[bool]:
    """Role assignments on `scope` (not unscoped) to the user, directly or through a group."""
    groups = select(GroupMember.group_id).where(GroupMember.user_id == user_id)
    actor = or_(RoleAssignment.user_id == user_id, RoleAssignment.group_id.in_(groups))
    if scope.project_id is not None:
        return and_(actor, RoleAssignment.project_id == scope.project_id)
    if scope.domain_id is not None:
        return and_(actor, RoleAssignment.domain_id == scope.domain_id)
    return and_(actor, RoleAssignment.system == SYSTEM_ALL)


def granted_roles(session: Session, user_id: str, scope: Scope) -> list[Role]:
    """The roles assigned on `scope` to the user directly or through a group (not implied)."""
    if scope.unscoped:
        return []
    query = (select(Role).join(RoleAssignment, RoleAssignment.role_id == Role.id)
             .where(_assigned(user_id, scope)))
    return list(session.scalars(query.distinct().order_by(Role.name)))


def role_names(session: Session, user_id: str, project_id: str) -> tuple[str, ...]:
    """The user's effective role names on a project (implied roles included)."""
    return scope_role_names(session, user_id, Scope(project_id=project_id))


def scope_role_names(session: Session, user_id: str, scope: Scope) -> tuple[str, ...]:
    """The user's effective role names on `scope`; every request's token asks, so this
    reads names only, in two queries (the assignments, then the implication rules)."""
    if scope.unscoped:
        return ()
    granted = session.scalars(select(Role.name).join(RoleAssignment,
                                                     RoleAssignment.role_id == Role.id)
                              .where(_assigned(user_id, scope)).distinct())
    return expand_implied(session, list(granted))


# Keystone's default implied roles (bootstrap stores them; an admin may change them).
DEFAULT_IMPLIED_ROLES = {"admin": ("member",), "member": ("reader",)}


_PRIOR, _IMPLIED = aliased(Role), aliased(Role)
# Built once: adapting the two aliases costs more than running the query.
_IMPLICATIONS = (select(_PRIOR.name, _IMPLIED.name)
                 .join(ImpliedRole, ImpliedRole.prior_role_id == _PRIOR.id)
                 .join(_IMPLIED, ImpliedRole.implied_role_id == _IMPLIED.id))


def implications(session: Session) -> dict[str, list[str]]:
    """{prior role name: [implied role names]} as stored."""
    found: dict[str, list[str]] = {}
    for prior_name, implied_name in session.execute(_IMPLICATIONS):
        found.setdefault(prior_name, []).append(implied_name)
    return found


def expand_implied(session: Session, names: Iterable[str]) -> tuple[str, ...]:
    rules = implications(session)
    found: set[str] = set()
    pending = list(names)
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(rules.get(name, ()))
    return tuple(sorted(found))


def token_role_names(session: Session, data: TokenData) -> tuple[str, ...]:
    """The roles a token confers now: its scope's roles, cut down to its application
    credential's roles when it came from one."""
    names = scope_role_names(session, data.user_id, data.scope)
    if data.app_cred_id is not None:
        credential = session.get(ApplicationCredential, data.app_cred_id)
        if credential is None:
            raise Unauthorized("The application credential of this token was deleted.")
        allowed = {r.name for r in session.scalars(
            select(Role).where(Role.id.in_(credential.role_ids)))}
        names = tuple(n for n in names if n in expand_implied(session, allowed))
    return names


def check_scope_target(session: Session, scope: Scope) -> Project | None:
    """The token's project or domain still exists and is enabled (with its domain).

    Returns the project of a project-scoped token.
    """
    if scope.project_id is not None:
        project = session.get(Project, scope.project_id)
        if project is None or not project.enabled:
            raise Unauthorized("The project of this token no longer exists or is disabled.")
        domain = session.get(Domain, project.domain_id)
        if domain is not None and not domain.enabled:
            raise Unauthorized("The domain of this token's project is disabled.")
        return project
    if scope.domain_id is not None:
        domain = session.get(Domain, scope.domain_id)
        if domain is None or not domain.enabled:
            raise Unauthorized("The domain of this token no longer exists or is disabled.")
    return None


def context_for(
    session: Session, token: str, *, now: datetime | None = None
) -> tuple[RequestContext, TokenData]:
    """Validate `token` and build the caller's context from the current database."""
    data = decode(session, token, now=now)
    user = session.get(User, data.user_id)
    if user is None or not user.enabled:
        raise Unauthorized("The user of this token no longer exists or is disabled.")
    user_domain = session.get(Domain, user.domain_id)
    if user_domain is not None and not user_domain.enabled:
        raise Unauthorized("The domain of this token's user is disabled.")
    changed = user.password_changed_at
    if changed is not None:
        # SQLite hands back naive datetimes; every time kumo stores is UTC.
        changed = changed if changed.tzinfo else changed.replace(tzinfo=UTC)
        if data.issued_at < changed and data.app_cred_id is None:
            raise Unauthorized("The token was issued before the user's password changed.")
    project = check_scope_target(session, data.scope)
    roles = token_role_names(session, data)
    if not roles and not data.scope.unscoped:
        raise Unauthorized("The user has no role on the token's scope any more.")
    context = RequestContext(
        user_id=user.id,
        user_name=user.name,
        project_id=project.id if project else "",
        project_name=project.name if project else "",
        roles=roles,
        token=token,
        expires_at=data.expires_at,
        domain_id=user.domain_id,
        scope_domain_id=data.domain_id or "",
        system_scope=data.system,
        app_cred_id=data.app_cred_id or "",
    )
    return context, data


def revoke(session: Session, data: TokenData) -> None:
    if session.get(RevokedToken, data.token_id) is None:
        session.add(RevokedToken(token_id=data.token_id, expires_at=data.expires_at))
