"""Password auth, token validation and revocation over HTTP (keystoneauth's calls)."""

from __future__ import annotations

from datetime import timedelta

from starlette.testclient import TestClient

from kumo.db.base import utcnow
from kumo.db.engine import session_scope
from kumo.identity.tokens import context_for, issue
from kumo.runtime import Runtime
from tests.conftest import ADMIN_PASSWORD, password_token


def test_password_auth_returns_scoped_token_with_catalog(api: TestClient) -> None:
    token = password_token(api, "admin", ADMIN_PASSWORD, "admin")
    response = api.get(
        "/identity/v3/auth/tokens", headers={"X-Auth-Token": token, "X-Subject-Token": token}
    )
    assert response.status_code == 200
    body = response.json()["token"]
    assert body["project"]["name"] == "admin"
    assert {r["name"] for r in body["roles"]} == {"admin", "member", "reader"}
    types = {entry["type"]: entry for entry in body["catalog"]}
    assert set(types) >= {"identity", "image", "compute", "network"}
    assert types["image"]["endpoints"][0]["url"] == "http://testserver/image"


def test_wrong_password_is_401_in_keystone_shape(api: TestClient) -> None:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": "admin", "domain": {"id": "default"},
                                      "password": "nope"}},
            }
        }
    }
    response = api.post("/identity/v3/auth/tokens", json=body)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == 401


def test_revoked_and_expired_tokens_are_refused(api: TestClient, runtime: Runtime) -> None:
    token = password_token(api, "admin", ADMIN_PASSWORD, "admin")
    headers = {"X-Auth-Token": token, "X-Subject-Token": token}
    assert api.delete("/identity/v3/auth/tokens", headers=headers).status_code == 204
    assert api.get("/identity/v3/auth/catalog", headers=headers).status_code == 401

    with session_scope(runtime.sessions) as session:
        _, data = context_for(session, password_token(api, "admin", ADMIN_PASSWORD, "admin"))
        old, _ = issue(session, data.user_id, data.project_id, now=utcnow() - timedelta(hours=2))
    response = api.get("/identity/v3/auth/catalog", headers={"X-Auth-Token": old})
    assert response.status_code == 401
    assert "expired" in response.json()["error"]["message"]


def test_discovery_is_public(api: TestClient) -> None:
    response = api.get("/identity/")
    assert response.status_code == 300
    assert response.json()["versions"]["values"][0]["id"].startswith("v3")
    assert api.get("/identity/v3").json()["version"]["status"] == "stable"
