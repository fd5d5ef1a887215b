"""Application credentials (and logging in with them), credentials and EC2 credentials."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from tests.identity.test_domain_routes import V3, auth, role_id

Headers = dict[str, str]


def me(api: TestClient, headers: Headers) -> dict[str, Any]:
    token = api.get(f"{V3}/auth/tokens",
                    headers={**headers, "X-Subject-Token": headers["X-Auth-Token"]})
    return dict(token.json()["token"])


def test_application_credential_logs_in_with_its_roles_only(
    api: TestClient, admin_headers: Headers, make_project_user: Callable[..., Headers]
) -> None:
    alice = make_project_user("p1", "alice", roles=("member",))
    token = me(api, alice)
    user_id, project_id = token["user"]["id"], token["project"]["id"]
    url = f"{V3}/users/{user_id}/application_credentials"
    admin_role = role_id(api, admin_headers, "admin")
    refused = api.post(url, json={"application_credential": {
        "name": "ci", "roles": [{"id": admin_role}]}}, headers=alice)
    assert refused.status_code == 403  # she does not hold admin there
    created = api.post(url, json={"application_credential": {
        "name": "ci", "roles": [{"name": "reader"}], "description": "the farm"}}, headers=alice)
    assert created.status_code == 201, created.text
    credential = created.json()["application_credential"]
    assert credential["project_id"] == project_id and credential["secret"]
    assert [r["name"] for r in credential["roles"]] == ["reader"]
    assert "secret" not in api.get(f"{url}/{credential['id']}", headers=alice).json()[
        "application_credential"]
    duplicate = api.post(url, json={"application_credential": {"name": "ci"}}, headers=alice)
    assert duplicate.status_code == 409
    login = auth(api, {"methods": ["application_credential"], "application_credential": {
        "id": credential["id"], "secret": credential["secret"]}})
    assert login.status_code == 201, login.text
    body = login.json()["token"]
    assert body["project"]["id"] == project_id
    assert {r["name"] for r in body["roles"]} == {"reader"}
    assert body["application_credential"]["id"] == credential["id"]
    by_name = auth(api, {"methods": ["application_credential"], "application_credential": {
        "name": "ci", "user": {"name": "alice", "domain": {"id": "default"}},
        "secret": credential["secret"]}})
    assert by_name.status_code == 201
    farm = {"X-Auth-Token": login.headers["X-Subject-Token"]}
    assert api.get("/image/v2/images", headers=farm).status_code == 200
    made = api.post("/image/v2/images", json={"name": "x"}, headers=farm)
    assert made.status_code == 403  # reader only, though alice is a member
    wrong = auth(api, {"methods": ["application_credential"], "application_credential": {
        "id": credential["id"], "secret": "guess"}})
    assert wrong.status_code == 401
    listed = api.get(url, params={"name": "ci"}, headers=alice).json()
    assert [c["id"] for c in listed["application_credentials"]] == [credential["id"]]
    assert api.delete(f"{url}/{credential['id']}", headers=alice).status_code == 204
    assert api.get(f"{V3}/auth/tokens", headers={**alice, "X-Subject-Token": farm[
        "X-Auth-Token"]}).status_code == 404  # its tokens end with it


def test_credentials_and_ec2(api: TestClient, admin_headers: Headers,
                             make_project_user: Callable[..., Headers]) -> None:
    bob = make_project_user("p1", "bob")
    token = me(api, bob)
    user_id, project_id = token["user"]["id"], token["project"]["id"]
    ec2 = api.post(f"{V3}/users/{user_id}/credentials/OS-EC2", json={"tenant_id": project_id},
                   headers=bob)
    assert ec2.status_code == 201, ec2.text
    pair = ec2.json()["credential"]
    assert pair["tenant_id"] == project_id and pair["access"] and pair["secret"]
    shown = api.get(f"{V3}/users/{user_id}/credentials/OS-EC2/{pair['access']}", headers=bob)
    assert shown.json()["credential"]["secret"] == pair["secret"]
    general = api.get(f"{V3}/credentials", params={"type": "ec2"}, headers=bob).json()
    assert [json.loads(c["blob"])["access"] for c in general["credentials"]] == [pair["access"]]
    blob = json.dumps({"access": "a1", "secret": "s1"})
    other = api.post(f"{V3}/credentials", json={"credential": {
        "type": "ec2", "blob": blob, "user_id": user_id, "project_id": project_id}},
        headers=admin_headers)
    assert other.status_code == 201
    cred_id = other.json()["credential"]["id"]
    mine = api.patch(f"{V3}/credentials/{cred_id}", json={"credential": {
        "blob": json.dumps({"access": "a1", "secret": "s2"})}}, headers=admin_headers)
    assert json.loads(mine.json()["credential"]["blob"])["secret"] == "s2"
    not_yours = make_project_user("p2", "eve")
    assert api.get(f"{V3}/credentials/{cred_id}", headers=not_yours).status_code == 404
    assert api.post(f"{V3}/credentials", json={"credential": {
        "type": "cert", "blob": "x", "user_id": user_id}},
        headers=not_yours).status_code == 403
    assert api.delete(f"{V3}/users/{user_id}/credentials/OS-EC2/{pair['access']}",
                      headers=bob).status_code == 204
    assert api.get(f"{V3}/users/{user_id}/credentials/OS-EC2/{pair['access']}",
                   headers=bob).status_code == 404


def test_project_tags(api: TestClient, admin_headers: Headers) -> None:
    project = api.post(f"{V3}/projects", json={"project": {"name": "tagged"}},
                       headers=admin_headers).json()["project"]
    url = f"{V3}/projects/{project['id']}/tags"
    assert api.put(f"{url}/blue", headers=admin_headers).status_code == 201
    assert api.head(f"{url}/blue", headers=admin_headers).status_code == 204
    assert api.get(f"{url}/red", headers=admin_headers).status_code == 404
    replaced = api.put(url, json={"tags": ["a", "b"]}, headers=admin_headers)
    assert replaced.json()["tags"] == ["a", "b"]
    assert api.get(url, headers=admin_headers).json()["tags"] == ["a", "b"]
    assert api.put(f"{url}/bad,tag", headers=admin_headers).status_code == 400
    assert api.delete(f"{url}/a", headers=admin_headers).status_code == 204
    assert api.delete(url, headers=admin_headers).status_code == 204
    assert api.get(url, headers=admin_headers).json()["tags"] == []
