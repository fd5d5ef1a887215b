"""Glance's visibility rules, seen through the API by different projects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from tests.image.conftest import upload

Maker = Callable[..., dict[str, Any]]
Users = Callable[..., dict[str, str]]


def names(api: TestClient, headers: dict[str, str], query: str = "") -> list[str]:
    response = api.get(f"/image/v2/images{query}", headers=headers)
    assert response.status_code == 200, response.text
    return sorted(i["name"] for i in response.json()["images"])


def test_private_image_is_invisible_to_another_project(
    api: TestClient, new_image: Maker, make_project_user: Users
) -> None:
    alice = make_project_user("pa", "alice")
    bob = make_project_user("pb", "bob")
    image = new_image(headers=alice, name="secret", visibility="private", disk_format="raw")
    upload(api, alice, image["id"], b"s" * 10)
    assert names(api, alice) == ["secret"]
    assert names(api, bob) == []
    for path in ("", "/file"):
        assert api.get(f"/image/v2/images/{image['id']}{path}", headers=bob).status_code == 404
    patch = api.patch(
        f"/image/v2/images/{image['id']}",
        content="[]",
        headers={**bob, "Content-Type": "application/openstack-images-v2.1-json-patch"},
    )
    assert patch.status_code == 404
    assert api.delete(f"/image/v2/images/{image['id']}", headers=bob).status_code == 404


def test_public_and_community_images(
    api: TestClient, new_image: Maker, make_project_user: Users, admin_headers: dict[str, str]
) -> None:
    alice = make_project_user("pa", "alice")
    bob = make_project_user("pb", "bob")
    new_image(name="pub", visibility="public")
    community = new_image(headers=alice, name="comm", visibility="community")
    assert names(api, bob) == ["pub"]
    assert names(api, bob, "?visibility=community") == ["comm"]
    assert api.get(f"/image/v2/images/{community['id']}", headers=bob).status_code == 200
    # Bob may read but not change alice's community image.
    assert api.delete(f"/image/v2/images/{community['id']}", headers=bob).status_code == 403


def test_only_admin_publishes(api: TestClient, make_project_user: Users) -> None:
    alice = make_project_user("pa", "alice")
    response = api.post(
        "/image/v2/images", json={"name": "x", "visibility": "public"}, headers=alice
    )
    assert response.status_code == 403


def test_reader_cannot_write(api: TestClient, new_image: Maker, make_project_user: Users) -> None:
    reader = make_project_user("pa", "rita", roles=("reader",))
    assert api.post("/image/v2/images", json={"name": "x"}, headers=reader).status_code == 403
    assert names(api, reader) == []


def test_member_sees_shared_image_once_accepted(
    api: TestClient, new_image: Maker, make_project_user: Users, runtime: Any
) -> None:
    alice = make_project_user("pa", "alice")
    bob = make_project_user("pb", "bob")
    carol = make_project_user("pc", "carol")
    image = new_image(headers=alice, name="shared-one", disk_format="raw")
    url = f"/image/v2/images/{image['id']}"
    upload(api, alice, image["id"], b"m" * 64)
    bob_project = api.get(
        "/identity/v3/auth/tokens", headers={**bob, "X-Subject-Token": bob["X-Auth-Token"]}
    ).json()["token"]["project"]["id"]

    added = api.post(f"{url}/members", json={"member": bob_project}, headers=alice)
    assert added.status_code == 200, added.text
    assert added.json()["status"] == "pending"
    assert (
        api.post(f"{url}/members", json={"member": bob_project}, headers=alice).status_code == 409
    )
    # Pending: reachable by id, not listed.
    assert names(api, bob) == []
    assert names(api, bob, "?member_status=pending&visibility=shared") == ["shared-one"]
    assert api.get(url, headers=bob).status_code == 200
    assert api.get(url, headers=carol).status_code == 404
    # Only bob sets bob's status.
    assert (
        api.put(
            f"{url}/members/{bob_project}", json={"status": "accepted"}, headers=alice
        ).status_code
        == 403
    )
    accepted = api.put(f"{url}/members/{bob_project}", json={"status": "accepted"}, headers=bob)
    assert accepted.status_code == 200 and accepted.json()["status"] == "accepted"
    assert names(api, bob) == ["shared-one"]
    assert api.get(f"{url}/file", headers=bob).content == b"m" * 64
    assert [m["member_id"] for m in api.get(f"{url}/members", headers=alice).json()["members"]] == [
        bob_project
    ]
    assert api.delete(f"{url}/members/{bob_project}", headers=alice).status_code == 204
    assert api.get(url, headers=bob).status_code == 404


def test_private_image_refuses_members(
    api: TestClient, new_image: Maker, admin_headers: dict[str, str]
) -> None:
    image = new_image(visibility="private")
    response = api.post(
        f"/image/v2/images/{image['id']}/members", json={"member": "p"}, headers=admin_headers
    )
    assert response.status_code == 403
