"""Keystone-style tokens: Fernet-encrypted, self-contained, checked against the database.

A token carries who, which project, when it was issued and when it expires. On each
request the user, project and role assignments are read fresh, so disabling a user
or removing a role takes effect at once; `DELETE /v3/auth/tokens` revokes one token.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import select
from sqlalchemy.orm import Session

from kumo.api.context import RequestContext
from kumo.db.base import utcnow
from kumo.errors import Unauthorized
from kumo.identity.keys import shared_key
from kumo.identity.models import Project, RevokedToken, Role, RoleAssignment, User

TOKEN_TTL = timedelta(hours=1)  # keystone's [token] expiration default
_KEY_NAME = "fernet_key"


@dataclass(frozen=True)
class TokenData:
    token_id: str
    user_id: str
    project_id: str
    methods: tuple[str, ...]
    issued_at: datetime
    expires_at: datetime


def signing_key(session: Session) -> Fernet:
    """The token key, created on first use and shared by all API processes via the db."""
    return Fernet(shared_key(session, _KEY_NAME, lambda: Fernet.generate_key().decode()))


def issue(
    session: Session,
    user_id: str,
    project_id: str,
    methods: tuple[str, ...] = ("password",),
    *,
    now: datetime | None = None,
    ttl: timedelta = TOKEN_TTL,
) -> tuple[str, TokenData]:
    # Sub-second precision, so a password change invalidates tokens issued just before it.
    issued = now or datetime.now(UTC)
    data = TokenData(
        token_id=secrets.token_hex(16),
        user_id=user_id,
        project_id=project_id,
        methods=methods,
        issued_at=issued,
        expires_at=issued + ttl,
    )
    payload = {
        "t": data.token_id,
        "u": user_id,
        "p": project_id,
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
        project_id=payload["p"],
        methods=tuple(payload["m"]),
        issued_at=datetime.fromtimestamp(payload["i"], UTC),
        expires_at=datetime.fromtimestamp(payload["e"], UTC),
    )
    if (now or utcnow()) >= data.expires_at:
        raise Unauthorized("The token has expired.")
    if session.get(RevokedToken, data.token_id) is not None:
        raise Unauthorized("The token has been revoked.")
    return data


def role_names(session: Session, user_id: str, project_id: str) -> tuple[str, ...]:
    rows = session.scalars(
        select(Role.name)
        .join(RoleAssignment, RoleAssignment.role_id == Role.id)
        .where(RoleAssignment.user_id == user_id, RoleAssignment.project_id == project_id)
        .order_by(Role.name)
    )
    return expand_implied(rows)


# Keystone's default implied roles: admin implies member, member implies reader.
IMPLIED_ROLES = {"admin": ("member",), "member": ("reader",)}


def expand_implied(names: object) -> tuple[str, ...]:
    found: set[str] = set()
    pending = list(names)  # type: ignore[call-overload]
    while pending:
        name = pending.pop()
        if name not in found:
            found.add(name)
            pending.extend(IMPLIED_ROLES.get(name, ()))
    return tuple(sorted(found))


def context_for(
    session: Session, token: str, *, now: datetime | None = None
) -> tuple[RequestContext, TokenData]:
    """Validate `token` and build the caller's context from the current database."""
    data = decode(session, token, now=now)
    user = session.get(User, data.user_id)
    project = session.get(Project, data.project_id)
    if user is None or not user.enabled:
        raise Unauthorized("The user of this token no longer exists or is disabled.")
    if project is None or not project.enabled:
        raise Unauthorized("The project of this token no longer exists or is disabled.")
    changed = user.password_changed_at
    if changed is not None:
        # SQLite hands back naive datetimes; every time kumo stores is UTC.
        changed = changed if changed.tzinfo else changed.replace(tzinfo=UTC)
        if data.issued_at < changed:
            raise Unauthorized("The token was issued before the user's password changed.")
    roles = role_names(session, user.id, project.id)
    if not roles:
        raise Unauthorized("The user has no role on the token's project any more.")
    context = RequestContext(
        user_id=user.id,
        user_name=user.name,
        project_id=project.id,
        project_name=project.name,
        roles=roles,
        token=token,
        expires_at=data.expires_at,
    )
    return context, data


def revoke(session: Session, data: TokenData) -> None:
    if session.get(RevokedToken, data.token_id) is None:
        session.add(RevokedToken(token_id=data.token_id, expires_at=data.expires_at))
