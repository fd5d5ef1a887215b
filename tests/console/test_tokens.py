"""Console tokens: stored hashed, spent once, bound to a console of one server, expire."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from kumo.console import tokens
from kumo.console.models import ConsoleAuthToken
from kumo.db.base import utcnow
from kumo.db.engine import session_scope
from kumo.errors import Forbidden
from kumo.runtime import Runtime

SERVER = "0b7e1f39-5c2e-4a55-9a43-52f4a3a1d001"


def issue(runtime: Runtime, kind: str = "novnc", ttl: int = 600, **at: object) -> str:
    with session_scope(runtime.sessions) as session:
        return tokens.issue(session, console_type=kind, server_id=SERVER, project_id="p1",
                            user_id="u1", ttl=ttl, **at)  # type: ignore[arg-type]


def spend(runtime: Runtime, token: str, kind: str = "novnc", server: str = SERVER,
          **at: object) -> tokens.ConsoleGrant:
    with session_scope(runtime.sessions) as session:
        return tokens.spend(session, token, console_type=kind, server_id=server,
                            **at)  # type: ignore[arg-type]


def test_a_token_works_once_and_only_its_hash_is_stored(runtime: Runtime) -> None:
    token = issue(runtime)
    with session_scope(runtime.sessions) as session:
        stored = session.scalars(select(ConsoleAuthToken.token_hash)).all()
    assert len(stored) == 1 and token not in stored[0] and len(stored[0]) == 64
    grant = spend(runtime, token)
    assert (grant.server_id, grant.project_id, grant.console_type) == (SERVER, "p1", "novnc")
    with pytest.raises(Forbidden, match="already used"):
        spend(runtime, token)


def test_a_token_for_another_server_or_console_is_refused_and_burnt(runtime: Runtime) -> None:
    token = issue(runtime)
    with pytest.raises(Forbidden, match="another console"):
        spend(runtime, token, server="0b7e1f39-5c2e-4a55-9a43-52f4a3a1d002")
    with pytest.raises(Forbidden, match="already used"):
        spend(runtime, token)  # a token shown to the wrong door is not kept for the right one
    serial = issue(runtime, "serial")
    with pytest.raises(Forbidden, match="another console"):
        spend(runtime, serial, "novnc")


def test_tokens_expire_after_their_ttl_and_are_purged(runtime: Runtime) -> None:
    now = utcnow()
    old = issue(runtime, ttl=600, now=now - timedelta(seconds=601))
    with pytest.raises(Forbidden, match="expired"):
        spend(runtime, old, now=now)
    stale = issue(runtime, ttl=600, now=now - timedelta(seconds=700))
    issue(runtime, now=now)  # issuing purges what has expired
    with pytest.raises(Forbidden, match="not valid"):
        spend(runtime, stale, now=now)
    fresh = issue(runtime, ttl=600, now=now - timedelta(seconds=599))
    assert spend(runtime, fresh, now=now).server_id == SERVER


def test_an_empty_or_made_up_token_is_refused(runtime: Runtime) -> None:
    with pytest.raises(Forbidden, match="required"):
        spend(runtime, "")
    with pytest.raises(Forbidden, match="not valid"):
        spend(runtime, "made-up")
