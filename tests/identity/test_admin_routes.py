"""Keystone v3 projects, users, roles and assignments over HTTP, with admin and member tokens."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from starlette.testclient import TestClient

from tests.conftest import password_token

V3 = "/identity/v3"
Headers = dict[str, str]


def create(api: TestClient, headers: Headers, kind: str, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post(f"{V3}/{kind}s", json={kind: body}, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()[kind]
    return created


def role_id(api: TestClient, headers: Headers, name: str) -> str:
    roles = api.get(f"{V3}/roles", params={"name": name}, headers=headers).json()["roles"]
    assert len(roles) == 1
    found: str = roles[0]["id"]
    return found


def test_project_crud(api: TestClient, admin_headers: Headers) -> None:
    project = create(api, admin_headers, "project", {"name": "p1", "description": "d"})
    assert project["domain_id"] == "default" and project["enabled"] is True
    assert project["links"]["self"].endswith(f"/identity/v3/projects/{project['id']}")
    url = f"{V3}/projects/{project['id']}"
    assert api.get(url, headers=admin_headers).json()["project"]["description"] == "d"

    listed = api.get(f"{V3}/projects", params={"name": "p1"}, headers=admin_headers).json()
    assert [p["id"] for p in listed["projects"]] == [project["id"]]

    patch = {"project": {"description": "new", "enabled": False, "tags": ["a"], "colour": "red"}}
    changed = api.patch(url, json=patch, headers=admin_headers).json()["project"]
    assert (changed["description"], changed["enabled"], changed["tags"]) == ("new", False, ["a"])
    assert changed["colour"] == "red"  # Keystone keeps unknown attributes

    assert api.delete(url, headers=admin_headers).status_code == 204
    gone = api.get(url, headers=admin_headers)
    assert gone.status_code == 404
    assert gone.json()["error"] == {
        "code": 404, "title": "Not Found", "message": f"Could not find project: {project['id']}."
    }


def test_duplicate_names_are_409(api: TestClient, admin_headers: Headers) -> None:
    create(api, admin_headers, "project", {"name": "dup"})
    again = api.post(f"{V3}/projects", json={"project": {"name": "dup"}}, headers=admin_headers)
    assert again.status_code == 409
    assert again.json()["error"]["title"] == "Conflict"
    create(api, admin_headers, "user", {"name": "dup", "password": "x"})
    again = api.post(f"{V3}/users", json={"user": {"name": "dup"}}, headers=admin_headers)
    assert again.status_code == 409


@pytest.mark.parametrize(
    ("kind", "body"),
    [
        ("project", {"name": ""}),
        ("project", {"name": "x" * 65}),
        ("project", {"description": "no name"}),
        ("project", {"name": "p", "enabled": "yes"}),
        ("project", {"name": "p", "domain_id": 7}),
        ("project", {"name": "p", "is_domain": True, "domain_id": "default"}),
        ("project", {"name": "p", "tags": ["a/b"]}),
        ("project", {"name": "p", "id": "chosen"}),
        ("user", {"name": "u", "password": 5}),
        ("user", {"name": "u", "default_project_id": "nope"}),
        ("user", {"name": " padded "}),
        ("role", {"name": "r", "domain_id": "default"}),
    ],
)
def test_bad_bodies_are_400_and_store_nothing(
    api: TestClient, admin_headers: Headers, kind: str, body: dict[str, Any]
) -> None:
    before = api.get(f"{V3}/{kind}s", headers=admin_headers).json()[f"{kind}s"]
    response = api.post(f"{V3}/{kind}s", json={kind: body}, headers=admin_headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == 400
    assert api.get(f"{V3}/{kind}s", headers=admin_headers).json()[f"{kind}s"] == before


def test_malformed_requests_are_4xx(api: TestClient, admin_headers: Headers) -> None:
    json_headers = {**admin_headers, "Content-Type": "application/json"}
    not_json = api.post(f"{V3}/projects", content=b"{", headers=json_headers)
    assert not_json.status_code == 400
    wrong_shape = api.post(f"{V3}/projects", json={"name": "p"}, headers=admin_headers)
    assert wrong_shape.status_code == 400
    assert "project" in wrong_shape.json()["error"]["message"]
    assert api.put(f"{V3}/projects", headers=admin_headers).status_code == 405


def test_user_lifecycle_and_password_login(api: TestClient, admin_headers: Headers) -> None:
    project = create(api, admin_headers, "project", {"name": "p1"})
    user = create(
        api, admin_headers, "user",
        {"name": "alice", "password": "s3cret", "default_project_id": project["id"],
         "email": "a@example.org"},
    )
    assert "password" not in user and user["default_project_id"] == project["id"]
    assert user["email"] == "a@example.org"
    member = role_id(api, admin_headers, "member")
    grant = f"{V3}/projects/{project['id']}/users/{user['id']}/roles/{member}"
    assert api.put(grant, headers=admin_headers).status_code == 204
    assert api.head(grant, headers=admin_headers).status_code == 204
    token = password_token(api, "alice", "s3cret", "p1")

    # The admin sets a new password: the old one and alice's old token stop working.
    patch = {"user": {"password": "n3w"}}
    assert api.patch(f"{V3}/users/{user['id']}", json=patch, headers=admin_headers).is_success
    assert api.get(f"{V3}/auth/catalog", headers={"X-Auth-Token": token}).status_code == 401
    password_token(api, "alice", "n3w", "p1")

    assert api.delete(f"{V3}/users/{user['id']}", headers=admin_headers).status_code == 204
    assert api.head(grant, headers=admin_headers).status_code == 404
    assignments = api.get(f"{V3}/role_assignments", params={"scope.project.id": project["id"]},
                          headers=admin_headers).json()["role_assignments"]
    assert assignments == []


def test_user_changes_own_password(
    api: TestClient, make_project_user: Callable[..., Headers]
) -> None:
    headers = make_project_user("p1", "bob")
    me = api.get(f"{V3}/auth/tokens", headers={**headers, "X-Subject-Token":
                                                headers["X-Auth-Token"]}).json()["token"]["user"]
    url = f"{V3}/users/{me['id']}/password"
    wrong = {"user": {"original_password": "nope", "password": "n3w"}}
    assert api.post(url, json=wrong, headers=headers).status_code == 401
    right = {"user": {"original_password": "pw-bob", "password": "n3w"}}
    assert api.post(url, json=right, headers=headers).status_code == 204
    password_token(api, "bob", "n3w", "p1")


def test_role_assignments_listing(api: TestClient, admin_headers: Headers) -> None:
    project = create(api, admin_headers, "project", {"name": "p1"})
    user = create(api, admin_headers, "user", {"name": "carol", "password": "x"})
    member = role_id(api, admin_headers, "member")
    api.put(f"{V3}/projects/{project['id']}/users/{user['id']}/roles/{member}",
            headers=admin_headers)
    params = {"user.id": user["id"], "include_names": "True", "effective": ""}
    rows = api.get(f"{V3}/role_assignments", params=params,
                   headers=admin_headers).json()["role_assignments"]
    assert sorted(row["role"]["name"] for row in rows) == ["member", "reader"]
    assert {row["scope"]["project"]["name"] for row in rows} == {"p1"}
    assert rows[0]["user"]["domain"] == {"id": "default", "name": "Default"}
    grants = api.get(f"{V3}/projects/{project['id']}/users/{user['id']}/roles",
                     headers=admin_headers).json()["roles"]
    assert [g["name"] for g in grants] == ["member"]
    # A group that does not exist has no assignments.
    by_group = api.get(f"{V3}/role_assignments", params={"group.id": "g"}, headers=admin_headers)
    assert by_group.json()["role_assignments"] == []


def test_non_admin_cannot_write_identity(
    api: TestClient, admin_headers: Headers, make_project_user: Callable[..., Headers]
) -> None:
    headers = make_project_user("p1", "dave")
    admin_project = api.get(f"{V3}/projects", params={"name": "admin"},
                            headers=admin_headers).json()["projects"][0]
    me = api.get(f"{V3}/users", headers=headers).json()["users"]
    assert [u["name"] for u in me] == ["dave"]
    admin_role = role_id(api, headers, "admin")
    writes = [
        api.post(f"{V3}/projects", json={"project": {"name": "x"}}, headers=headers),
        api.post(f"{V3}/users", json={"user": {"name": "x"}}, headers=headers),
        api.post(f"{V3}/roles", json={"role": {"name": "x"}}, headers=headers),
        api.patch(f"{V3}/users/{me[0]['id']}", json={"user": {"name": "y"}}, headers=headers),
        api.delete(f"{V3}/projects/{admin_project['id']}", headers=headers),
        api.put(f"{V3}/projects/{admin_project['id']}/users/{me[0]['id']}/roles/{admin_role}",
                headers=headers),
    ]
    assert [w.status_code for w in writes] == [403] * len(writes)
    assert "identity:create_project" in writes[0].json()["error"]["message"]
    # Nothing changed: dave still has no role on the admin project.
    mine = api.get(f"{V3}/role_assignments", headers=headers).json()["role_assignments"]
    assert {row["scope"]["project"]["id"] for row in mine} != {admin_project["id"]}


def test_non_admin_sees_only_own_project_and_self(
    api: TestClient, admin_headers: Headers, make_project_user: Callable[..., Headers]
) -> None:
    headers = make_project_user("p1", "erin")
    make_project_user("p2", "frank")
    projects = api.get(f"{V3}/projects", headers=headers).json()["projects"]
    assert [p["name"] for p in projects] == ["p1"]
    admin_project = api.get(f"{V3}/projects", params={"name": "admin"},
                            headers=admin_headers).json()["projects"][0]
    assert api.get(f"{V3}/projects/{admin_project['id']}", headers=headers).status_code == 403
    assert api.get(f"{V3}/projects/{projects[0]['id']}", headers=headers).status_code == 200
    assert api.get(f"{V3}/users", params={"name": "frank"}, headers=headers).json()["users"] == []
    frank = api.get(f"{V3}/users", params={"name": "frank"},
                    headers=admin_headers).json()["users"][0]
    assert api.get(f"{V3}/users/{frank['id']}", headers=headers).status_code == 403
    assert api.get(f"{V3}/role_assignments", params={"user.id": frank["id"]},
                   headers=headers).status_code == 403
    mine = api.get(f"{V3}/auth/projects", headers=headers).json()["projects"]
    assert [p["name"] for p in mine] == ["p1"]


def test_requests_without_a_valid_token_are_401(api: TestClient) -> None:
    assert api.get(f"{V3}/projects").status_code == 401
    bad = api.get(f"{V3}/users", headers={"X-Auth-Token": "garbage"})
    assert bad.status_code == 401
    assert bad.json()["error"]["code"] == 401


def test_default_domain_lookups(api: TestClient, admin_headers: Headers) -> None:
    by_id = api.get(f"{V3}/domains/default", headers=admin_headers)
    assert by_id.json()["domain"]["name"] == "Default"
    by_name = api.get(f"{V3}/domains", params={"name": "Default"}, headers=admin_headers)
    assert [d["id"] for d in by_name.json()["domains"]] == ["default"]
    assert api.get(f"{V3}/domains/Default", headers=admin_headers).status_code == 404
    other = api.get(f"{V3}/domains", params={"name": "Other"}, headers=admin_headers)
    assert other.json()["domains"] == []
    in_other = api.get(f"{V3}/projects", params={"domain_id": "x"}, headers=admin_headers)
    assert in_other.json()["projects"] == []


def test_token_validation_needs_admin_or_same_user(
    api: TestClient, admin_headers: Headers, make_project_user: Callable[..., Headers]
) -> None:
    member = make_project_user("p1", "gina")
    admin_token = admin_headers["X-Auth-Token"]
    member_token = member["X-Auth-Token"]
    url = f"{V3}/auth/tokens"
    seen = api.get(url, headers={**admin_headers, "X-Subject-Token": member_token})
    assert seen.status_code == 200 and seen.json()["token"]["user"]["name"] == "gina"
    own = api.get(url, headers={**member, "X-Subject-Token": member_token})
    assert own.status_code == 200
    other = api.get(url, headers={**member, "X-Subject-Token": admin_token})
    assert other.status_code == 403
    bogus = api.get(url, headers={**admin_headers, "X-Subject-Token": "bogus"})
    assert bogus.status_code == 404
