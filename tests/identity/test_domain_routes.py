"""Domains, groups, grants on domains and the system, and the token scopes they allow."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

Headers = dict[str, str]
V3 = "/identity/v3"


def create(api: TestClient, headers: Headers, kind: str, body: dict[str, Any]) -> Any:
    response = api.post(f"{V3}/{kind}s", json={kind: body}, headers=headers)
    assert response.status_code == 201, response.text
    return response.json()[kind]


def role_id(api: TestClient, headers: Headers, name: str) -> str:
    roles = api.get(f"{V3}/roles", params={"name": name}, headers=headers).json()["roles"]
    return str(roles[0]["id"])


def auth(api: TestClient, identity: dict[str, Any], scope: Any = None) -> Any:
    body: dict[str, Any] = {"auth": {"identity": identity}}
    if scope is not None:
        body["auth"]["scope"] = scope
    return api.post(f"{V3}/auth/tokens", json=body)


def password(user_id: str, secret: str) -> dict[str, Any]:
    return {"methods": ["password"], "password": {"user": {"id": user_id, "password": secret}}}


def test_domain_lifecycle_and_names_per_domain(api: TestClient, admin_headers: Headers) -> None:
    lab = create(api, admin_headers, "domain", {"name": "lab", "description": "the lab"})
    assert lab["enabled"] is True and lab["name"] == "lab"
    twin = create(api, admin_headers, "project", {"name": "shared", "domain_id": lab["id"]})
    plain = create(api, admin_headers, "project", {"name": "shared"})  # same name, Default
    assert twin["domain_id"] == lab["id"] and twin["parent_id"] == lab["id"]
    assert plain["domain_id"] == "default"
    again = api.post(f"{V3}/projects", json={"project": {"name": "shared", "domain_id": lab["id"]}},
                     headers=admin_headers)
    assert again.status_code == 409
    listed = api.get(f"{V3}/projects", params={"domain_id": lab["id"]}, headers=admin_headers)
    assert [p["id"] for p in listed.json()["projects"]] == [twin["id"]]
    missing = api.post(f"{V3}/users", json={"user": {"name": "u", "domain_id": "nope"}},
                       headers=admin_headers)
    assert missing.status_code == 404
    url = f"{V3}/domains/{lab['id']}"
    assert api.delete(url, headers=admin_headers).status_code == 403  # still enabled
    disabled = api.patch(url, json={"domain": {"enabled": False}}, headers=admin_headers)
    assert disabled.json()["domain"]["enabled"] is False
    assert api.delete(url, headers=admin_headers).status_code == 204
    assert api.get(url, headers=admin_headers).status_code == 404
    assert api.get(f"{V3}/projects/{twin['id']}", headers=admin_headers).status_code == 404
    assert api.get(f"{V3}/domains/nope", headers=admin_headers).json()["error"]["code"] == 404
    default = api.delete(f"{V3}/domains/default", headers=admin_headers)
    assert default.status_code == 403


def test_groups_members_and_group_grants_reach_tokens(api: TestClient,
                                                      admin_headers: Headers) -> None:
    project = create(api, admin_headers, "project", {"name": "p1"})
    user = create(api, admin_headers, "user", {"name": "gus", "password": "pw"})
    group = create(api, admin_headers, "group", {"name": "ops"})
    member = role_id(api, admin_headers, "member")
    scope = {"project": {"id": project["id"]}}
    assert auth(api, password(user["id"], "pw"), scope).status_code == 401  # no role yet
    assert api.put(f"{V3}/groups/{group['id']}/users/{user['id']}",
                   headers=admin_headers).status_code == 204
    grant = f"{V3}/projects/{project['id']}/groups/{group['id']}/roles/{member}"
    assert api.put(grant, headers=admin_headers).status_code == 204
    assert api.head(grant, headers=admin_headers).status_code == 204
    token = auth(api, password(user["id"], "pw"), scope)
    assert token.status_code == 201
    assert {r["name"] for r in token.json()["token"]["roles"]} == {"member", "reader"}
    checked = api.get(f"{V3}/auth/tokens", headers={
        **admin_headers, "X-Subject-Token": token.headers["X-Subject-Token"]})
    assert checked.json() == token.json()  # validating shows what the login issued
    users = api.get(f"{V3}/groups/{group['id']}/users", headers=admin_headers).json()["users"]
    assert [u["name"] for u in users] == ["gus"]
    mine = api.get(f"{V3}/users/{user['id']}/groups", headers=admin_headers).json()["groups"]
    assert [g["name"] for g in mine] == ["ops"]
    effective = api.get(f"{V3}/role_assignments",
                        params={"user.id": user["id"], "effective": ""},
                        headers=admin_headers).json()["role_assignments"]
    assert {r["links"]["membership"] for r in effective} == {
        f"http://testserver/identity/v3/groups/{group['id']}/users/{user['id']}"}
    by_group = api.get(f"{V3}/role_assignments", params={"group.id": group["id"]},
                       headers=admin_headers).json()["role_assignments"]
    assert [r["group"]["id"] for r in by_group] == [group["id"]]
    assert api.delete(f"{V3}/groups/{group['id']}/users/{user['id']}",
                      headers=admin_headers).status_code == 204
    assert auth(api, password(user["id"], "pw"), scope).status_code == 401


def test_unscoped_domain_and_system_tokens(api: TestClient, admin_headers: Headers) -> None:
    user = create(api, admin_headers, "user", {"name": "una", "password": "pw"})
    unscoped = auth(api, password(user["id"], "pw"))
    assert unscoped.status_code == 201
    body = unscoped.json()["token"]
    assert "project" not in body and "roles" not in body and "catalog" not in body
    headers = {"X-Auth-Token": unscoped.headers["X-Subject-Token"]}
    assert api.get(f"{V3}/auth/projects", headers=headers).status_code == 200
    assert api.get("/image/v2/images", headers=headers).status_code == 403  # needs a project
    reader = role_id(api, admin_headers, "reader")
    assert api.put(f"{V3}/domains/default/users/{user['id']}/roles/{reader}",
                   headers=admin_headers).status_code == 204
    domain_token = auth(api, {"methods": ["token"], "token": {"id": headers["X-Auth-Token"]}},
                        {"domain": {"name": "Default"}})
    assert domain_token.status_code == 201
    assert domain_token.json()["token"]["domain"] == {"id": "default", "name": "Default"}
    assert domain_token.json()["token"]["expires_at"] == body["expires_at"]  # rescoped
    assert [d["id"] for d in api.get(f"{V3}/auth/domains", headers=headers).json()[
        "domains"]] == ["default"]
    system = auth(api, password(user["id"], "pw"), {"system": {"all": True}})
    assert system.status_code == 401  # no role on the system
    assert api.put(f"{V3}/system/users/{user['id']}/roles/{reader}",
                   headers=admin_headers).status_code == 204
    system = auth(api, password(user["id"], "pw"), {"system": {"all": True}})
    assert system.status_code == 201
    assert system.json()["token"]["system"] == {"all": True}
    rows = api.get(f"{V3}/role_assignments", params={"scope.system": "all"},
                   headers=admin_headers).json()["role_assignments"]
    mine = [r for r in rows if r.get("user", {}).get("id") == user["id"]]
    assert [(r["role"]["id"], r["scope"]) for r in mine] == [(reader, {"system": {"all": True}})]


def test_admin_logs_in_with_system_scope(api: TestClient) -> None:
    from tests.conftest import ADMIN_PASSWORD

    body = {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": ADMIN_PASSWORD}}}
    token = auth(api, body, {"system": {"all": True}})
    assert token.status_code == 201
    assert "admin" in {r["name"] for r in token.json()["token"]["roles"]}


def test_projects_acting_as_domains(api: TestClient, admin_headers: Headers) -> None:
    made = create(api, admin_headers, "project", {"name": "as-domain", "is_domain": True})
    assert made["is_domain"] is True and made["domain_id"] is None
    domain = api.get(f"{V3}/domains/{made['id']}", headers=admin_headers)
    assert domain.json()["domain"]["name"] == "as-domain"
    listed = api.get(f"{V3}/projects", params={"is_domain": "True"}, headers=admin_headers)
    assert made["id"] in [p["id"] for p in listed.json()["projects"]]
    url = f"{V3}/projects/{made['id']}"
    assert api.patch(url, json={"project": {"enabled": False}},
                     headers=admin_headers).json()["project"]["enabled"] is False
    assert api.delete(url, headers=admin_headers).status_code == 204
    assert api.get(f"{V3}/domains/{made['id']}", headers=admin_headers).status_code == 404


def test_implied_roles_are_data_and_reach_tokens(api: TestClient, admin_headers: Headers) -> None:
    boss = create(api, admin_headers, "role", {"name": "boss"})
    member = role_id(api, admin_headers, "member")
    rule = f"{V3}/roles/{boss['id']}/implies/{member}"
    made = api.put(rule, headers=admin_headers)
    assert made.status_code == 201
    assert made.json()["role_inference"]["implies"]["name"] == "member"
    assert api.head(rule, headers=admin_headers).status_code == 204
    cycle = api.put(f"{V3}/roles/{member}/implies/{boss['id']}", headers=admin_headers)
    assert cycle.status_code == 403
    admin_role = role_id(api, admin_headers, "admin")
    assert api.put(f"{V3}/roles/{boss['id']}/implies/{admin_role}",
                   headers=admin_headers).status_code == 403
    project = create(api, admin_headers, "project", {"name": "p-boss"})
    user = create(api, admin_headers, "user", {"name": "bo", "password": "pw"})
    api.put(f"{V3}/projects/{project['id']}/users/{user['id']}/roles/{boss['id']}",
            headers=admin_headers)
    token = auth(api, password(user["id"], "pw"), {"project": {"id": project["id"]}})
    assert {r["name"] for r in token.json()["token"]["roles"]} == {"boss", "member", "reader"}
    listed = api.get(f"{V3}/role_inferences", headers=admin_headers).json()["role_inferences"]
    assert {r["prior_role"]["name"] for r in listed} == {"admin", "member", "boss"}
    assert api.delete(rule, headers=admin_headers).status_code == 204
    assert api.get(rule, headers=admin_headers).status_code == 404


def test_policy_blobs(api: TestClient, admin_headers: Headers) -> None:
    made = api.post(f"{V3}/policies", json={"policy": {"type": "application/json",
                                                       "blob": '{"a": "b"}'}},
                    headers=admin_headers)
    assert made.status_code == 201
    url = f"{V3}/policies/{made.json()['policy']['id']}"
    changed = api.patch(url, json={"policy": {"type": "text/plain"}}, headers=admin_headers)
    assert changed.json()["policy"]["type"] == "text/plain"
    assert api.get(f"{V3}/policies", params={"type": "text/plain"},
                   headers=admin_headers).json()["policies"][0]["blob"] == '{"a": "b"}'
    assert api.delete(url, headers=admin_headers).status_code == 204
    assert api.get(url, headers=admin_headers).status_code == 404
