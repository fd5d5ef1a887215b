"""The token cache: a validated token is reused for a few seconds, and any identity
change made through this process is seen by the very next request."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from kumo.api.context import RequestContext
from kumo.config import ConfigError, load_settings
from kumo.db.engine import session_scope
from kumo.identity import middleware
from kumo.identity.middleware import ValidatedTokens, changes_identity
from kumo.identity.models import User
from kumo.runtime import Runtime
from tests.conftest import ADMIN_PASSWORD, password_token

CATALOG = "/identity/v3/auth/catalog"


@pytest.fixture
def validations(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The tokens the middleware validated against the database, in order."""
    seen: list[str] = []
    real = middleware.context_for

    def counting(session: object, token: str) -> object:
        seen.append(token)
        return real(session, token)  # type: ignore[arg-type]

    monkeypatch.setattr(middleware, "context_for", counting)
    return seen


def test_a_token_is_validated_once_then_reused(api: TestClient,
                                               validations: list[str]) -> None:
    token = password_token(api, "admin", ADMIN_PASSWORD, "admin")
    for path in (CATALOG, "/compute/v2.1/flavors", "/image/v2/images", CATALOG):
        assert api.get(path, headers={"X-Auth-Token": token}).status_code == 200
    assert validations == [token]


def test_a_revoked_token_is_refused_at_once(api: TestClient, validations: list[str]) -> None:
    token = password_token(api, "admin", ADMIN_PASSWORD, "admin")
    headers = {"X-Auth-Token": token, "X-Subject-Token": token}
    assert api.get(CATALOG, headers=headers).status_code == 200
    assert api.delete("/identity/v3/auth/tokens", headers=headers).status_code == 204
    assert api.get(CATALOG, headers=headers).status_code == 401


def test_a_removed_role_and_a_disabled_user_count_at_once(
        api: TestClient, admin_headers: dict[str, str],
        make_project_user: Callable[..., dict[str, str]]) -> None:
    alice = make_project_user("p1", "alice", roles=("member",))
    assert api.get("/compute/v2.1/servers", headers=alice).status_code == 200
    body = api.get("/identity/v3/role_assignments?include_names=1",
                   headers=admin_headers).json()
    grant = next(a for a in body["role_assignments"] if a["user"]["name"] == "alice")
    url = (f"/identity/v3/projects/{grant['scope']['project']['id']}/users/"
           f"{grant['user']['id']}/roles/{grant['role']['id']}")
    assert api.delete(url, headers=admin_headers).status_code == 204
    assert api.get("/compute/v2.1/servers", headers=alice).status_code == 401

    bob = make_project_user("p1", "bob", roles=("member",))
    assert api.get("/compute/v2.1/servers", headers=bob).status_code == 200
    bob_id = api.get("/identity/v3/users?name=bob", headers=admin_headers).json()["users"][0]
    assert api.patch(f"/identity/v3/users/{bob_id['id']}", json={"user": {"enabled": False}},
                     headers=admin_headers).status_code == 200
    assert api.get("/compute/v2.1/servers", headers=bob).status_code == 401


def test_logins_leave_the_cache_alone(api: TestClient, validations: list[str]) -> None:
    token = password_token(api, "admin", ADMIN_PASSWORD, "admin")
    api.get(CATALOG, headers={"X-Auth-Token": token})
    password_token(api, "admin", ADMIN_PASSWORD, "admin")
    api.get(CATALOG, headers={"X-Auth-Token": token})
    assert validations == [token]


def test_another_process_change_is_seen_after_the_cache_time(
        api: TestClient, runtime: Runtime, validations: list[str],
        make_project_user: Callable[..., dict[str, str]],
        monkeypatch: pytest.MonkeyPatch) -> None:
    carol = make_project_user("p1", "carol")
    assert api.get(CATALOG, headers=carol).status_code == 200
    with session_scope(runtime.sessions) as session:  # behind this process's back
        user = session.query(User).filter_by(name="carol").one()
        user.enabled = False
    assert api.get(CATALOG, headers=carol).status_code == 200  # still cached
    later = middleware.time.monotonic() + runtime.settings.identity.token_cache_time
    monkeypatch.setattr(middleware.time, "monotonic", lambda: later)
    assert api.get(CATALOG, headers=carol).status_code == 401


def context(expires_in: timedelta = timedelta(hours=1)) -> RequestContext:
    return RequestContext(user_id="u", user_name="u", project_id="p", project_name="p",
                          roles=("member",), token="t",
                          expires_at=datetime.now(UTC) + expires_in)


def test_entries_end_with_their_time_their_token_or_a_change(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cache = ValidatedTokens(ttl=5, size=2)
    now = [1000.0]
    monkeypatch.setattr(middleware.time, "monotonic", lambda: now[0])
    cache.put("a", context(), cache.generation)
    assert cache.get("a") is not None
    now[0] += 5
    assert cache.get("a") is None  # the cache time is over

    cache.put("b", context(timedelta(seconds=-1)), cache.generation)
    assert cache.get("b") is None  # the token itself has expired

    old = cache.generation
    cache.invalidate()
    cache.put("c", context(), old)  # validated before a change: not kept
    assert cache.get("c") is None

    for token in ("d", "e", "f"):
        cache.put(token, context(), cache.generation)
    assert cache.get("d") is None and cache.get("f") is not None  # the oldest made room

    off = ValidatedTokens(ttl=0)
    off.put("a", context(), off.generation)
    assert off.get("a") is None


@pytest.mark.parametrize(("method", "path", "changes"), [
    ("GET", "/identity/v3/users", False),
    ("POST", "/identity/v3/auth/tokens", False),
    ("DELETE", "/identity/v3/auth/tokens", True),
    ("PATCH", "/identity/v3/users/x", True),
    ("PUT", "/identity/v3/projects/p/users/u/roles/r", True),
    ("POST", "/compute/v2.1/servers", False),
])
def test_which_requests_change_identity(method: str, path: str, changes: bool) -> None:
    assert changes_identity({"type": "http", "method": method, "path": path}) is changes


def test_cache_time_is_a_keystone_authtoken_option(tmp_path: Path) -> None:
    conf = tmp_path / "kumo.conf"
    conf.write_text("[keystone_authtoken]\ntoken_cache_time = 0\n")
    assert load_settings(config_file=conf).identity.token_cache_time == 0
    conf.write_text("[keystone_authtoken]\ntoken_cache_time = -1\n")
    with pytest.raises(ConfigError, match="token_cache_time"):
        load_settings(config_file=conf)


def test_the_request_id_is_each_request_own(api: TestClient) -> None:
    token = password_token(api, "admin", ADMIN_PASSWORD, "admin")
    ids = {api.get(CATALOG, headers={"X-Auth-Token": token}).headers["x-openstack-request-id"]
           for _ in range(3)}
    assert len(ids) == 3
