"""Console tokens: issued by the Nova API, spent once by the websocket relay.

As nova's `ConsoleAuthToken`: a random token goes to the caller inside the console
URL; only its sha256 is stored, with the server, project and console type it is
bound to and when it expires (`[consoleauth] token_ttl`, 600 s). Unlike nova's, a
token is spent by the first websocket that presents it (deleted in the same
statement that reads it), so a URL that leaks after use opens nothing.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from kumo.console.models import ConsoleAuthToken
from kumo.db.base import utcnow
from kumo.errors import Forbidden

CONSOLE_TYPES = ("novnc", "serial")


@dataclass(frozen=True)
class ConsoleGrant:
    """What a spent token allowed: this console of this server, for this project."""

    console_type: str
    server_id: str
    project_id: str
    user_id: str


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def issue(session: Session, *, console_type: str, server_id: str, project_id: str,
          user_id: str, ttl: int, now: datetime | None = None) -> str:
    """A new token for one use of `console_type` on `server_id`; expired ones are purged."""
    now = now or utcnow()
    session.execute(delete(ConsoleAuthToken).where(ConsoleAuthToken.expires_at <= now))
    token = secrets.token_urlsafe(32)
    session.add(ConsoleAuthToken(
        token_hash=_hash(token), console_type=console_type, server_id=server_id,
        project_id=project_id, user_id=user_id, created_at=now,
        expires_at=now + timedelta(seconds=ttl)))
    session.flush()
    return token


def spend(session: Session, token: str, *, console_type: str, server_id: str,
          now: datetime | None = None) -> ConsoleGrant:
    """Use `token` for `console_type` on `server_id` (Forbidden otherwise); once only.

    The token is gone after this call whatever the verdict: one presented for the
    wrong server or console is treated as stolen, not kept for a second try.
    """
    if not token:
        raise Forbidden("a console token is required")
    row = session.execute(
        delete(ConsoleAuthToken).where(ConsoleAuthToken.token_hash == _hash(token))
        .returning(ConsoleAuthToken.console_type, ConsoleAuthToken.server_id,
                   ConsoleAuthToken.project_id, ConsoleAuthToken.user_id,
                   ConsoleAuthToken.expires_at)
    ).first()
    session.commit()  # spent now, even if the checks below refuse it
    if row is None:
        raise Forbidden("the console token is not valid (unknown, or already used)")
    kind, bound_server, project, user, expires = row
    if _aware(expires) <= (now or utcnow()):
        raise Forbidden("the console token has expired; ask for a new console URL")
    if kind != console_type or bound_server != server_id:
        raise Forbidden("the console token was issued for another console")
    return ConsoleGrant(kind, bound_server, project, user)
