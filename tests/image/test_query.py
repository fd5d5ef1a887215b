"""Listing: filters, sorting, paging (over HTTP, as clients call it)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from tests.image.conftest import upload

Maker = Callable[..., dict[str, Any]]


def listed(api: TestClient, headers: dict[str, str], query: str) -> list[str]:
    response = api.get(f"/image/v2/images{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [i["name"] for i in response.json()["images"]]


def test_filters_and_sorting(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker
) -> None:
    a = new_image(name="a", disk_format="raw", tags=["x"])
    new_image(name="b", disk_format="raw", min_ram=5)
    new_image(name="c", os_hidden=True)
    upload(api, admin_headers, a["id"], b"1" * 1000)
    assert listed(api, admin_headers, "?sort=name:asc") == ["a", "b"]
    assert listed(api, admin_headers, "?sort_key=name&sort_dir=desc") == ["b", "a"]
    assert listed(api, admin_headers, "?os_hidden=true") == ["c"]
    assert listed(api, admin_headers, "?name=in:a,c&os_hidden=false") == ["a"]
    assert listed(api, admin_headers, "?status=active") == ["a"]
    assert listed(api, admin_headers, "?tag=x") == ["a"]
    assert listed(api, admin_headers, "?size_min=500") == ["a"]
    assert listed(api, admin_headers, "?size_max=500") == []
    assert listed(api, admin_headers, "?created_at=gte:2000-01-01T00:00:00Z&sort=name:asc") == [
        "a",
        "b",
    ]
    assert listed(api, admin_headers, "?updated_at=lt:2000-01-01T00:00:00Z") == []
    assert sorted(listed(api, admin_headers, "?visibility=shared")) == ["a", "b"]


def test_paging_with_marker_and_next(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker
) -> None:
    for name in "abcde":
        new_image(name=name)
    seen: list[str] = []
    url = "/v2/images?limit=2&sort=name:asc"
    while url:
        body = api.get(f"/image{url}", headers=admin_headers).json()
        assert "images" in body, (url, body)
        seen += [i["name"] for i in body["images"]]
        url = body.get("next", "")
    assert seen == list("abcde")


def test_bad_list_queries_are_400(api: TestClient, admin_headers: dict[str, str]) -> None:
    for query in (
        "?limit=x",
        "?limit=-1",
        "?sort_key=color",
        "?sort_dir=up",
        "?marker=00000000-0000-0000-0000-000000000000",
        "?created_at=after:2020",
        "?visibility=everyone",
        "?size_min=big",
        "?sort=name:asc&sort_key=name",
    ):
        response = api.get(f"/image/v2/images{query}", headers=admin_headers)
        assert response.status_code == 400, query


def _walk(api: TestClient, headers: dict[str, str], query: str) -> list[str]:
    """Every id, one page of one image at a time, following `next` (a marker each time)."""
    ids: list[str] = []
    url = f"/v2/images?limit=1&{query}"
    while url:
        body = api.get(f"/image{url}", headers=headers).json()
        ids += [i["id"] for i in body["images"]]
        url = body.get("next", "")
        assert len(ids) < 50, "paging does not end"
    return ids


def test_marker_paging_agrees_with_one_page_for_every_order(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker
) -> None:
    """Keys with NULLs (name, size), ties (min_disk) and both directions page exactly."""
    made = [new_image(name=name, min_disk=disk) for name, disk in
            (("b", 1), (None, 1), ("a", 2), (None, 2), ("b", 1))]
    upload(api, admin_headers, made[0]["id"], b"1" * 10)
    upload(api, admin_headers, made[2]["id"], b"1" * 30)
    for sort in ("name:asc", "name:desc", "size:asc", "size:desc", "min_disk:asc,name:desc",
                 "created_at:desc", "updated_at:asc"):
        whole = api.get(f"/image/v2/images?limit=100&sort={sort}", headers=admin_headers).json()
        expected = [i["id"] for i in whole["images"]]
        assert sorted(expected) == sorted(i["id"] for i in made)
        assert _walk(api, admin_headers, f"sort={sort}") == expected, sort
    names = [i["name"] for i in api.get("/image/v2/images?sort=name:asc",
                                        headers=admin_headers).json()["images"]]
    assert names == [None, None, "a", "b", "b"]  # NULLs first going up, as Glance on SQLite


def test_property_and_repeated_tag_filters(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker
) -> None:
    new_image(name="x", os_distro="ubuntu", tags=["a", "b"])
    new_image(name="y", os_distro="debian", tags=["a"])
    new_image(name="z")
    assert listed(api, admin_headers, "?os_distro=ubuntu") == ["x"]
    assert sorted(listed(api, admin_headers, "?os_distro=in:ubuntu,debian")) == ["x", "y"]
    assert listed(api, admin_headers, "?tag=a&tag=b") == ["x"]
    assert listed(api, admin_headers, "?created_at=lt:2000-01-01T00:00:00%2B05:00") == []


def test_what_each_project_lists(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker,
    make_project_user: Callable[..., dict[str, str]],
) -> None:
    alice = make_project_user("pa", "alice")
    bob = make_project_user("pb", "bob")
    bob_project = api.get("/identity/v3/auth/projects", headers=bob).json()["projects"][0]["id"]
    new_image(alice, name="mine")
    new_image(alice, name="community", visibility="community")
    shared = new_image(alice, name="shared", visibility="shared")
    new_image(name="public", visibility="public")
    api.post(f"/image/v2/images/{shared['id']}/members", json={"member": bob_project},
             headers=alice)
    assert sorted(listed(api, bob, "")) == ["public"]  # pending shares are not listed
    assert sorted(listed(api, bob, "?member_status=pending")) == ["public", "shared"]
    api.put(f"/image/v2/images/{shared['id']}/members/{bob_project}",
            json={"status": "accepted"}, headers=bob)
    assert sorted(listed(api, bob, "")) == ["public", "shared"]
    assert sorted(listed(api, bob, "?visibility=all")) == ["community", "public", "shared"]
    assert listed(api, bob, "?visibility=community") == ["community"]
    assert listed(api, bob, "?visibility=private") == []
    assert listed(api, alice, "?visibility=private") == []
    assert sorted(listed(api, alice, "")) == ["community", "mine", "public", "shared"]
    assert len(listed(api, admin_headers, "")) == 4
    # a marker the caller cannot see is refused like an unknown one
    mine = api.get("/image/v2/images?name=mine", headers=alice).json()["images"][0]["id"]
    assert api.get(f"/image/v2/images?marker={mine}", headers=bob).status_code == 400


def test_a_listed_image_reads_as_its_own_record(
    api: TestClient, admin_headers: dict[str, str], new_image: Maker
) -> None:
    a = new_image(name="a", disk_format="raw", tags=["z", "b"], zeta="1", alpha="2",
                  os_distro="debian")
    new_image(name="b")
    other = new_image(name="c", visibility="shared", tags=["only"])
    assert upload(api, admin_headers, a["id"], b"1" * 100).status_code == 204
    patch = [{"op": "replace", "path": "/zeta", "value": "3"},
             {"op": "add", "path": "/middle", "value": "m"}]
    response = api.patch(f"/image/v2/images/{a['id']}", json=patch, headers={
        **admin_headers, "Content-Type": "application/openstack-images-v2.1-json-patch"})
    assert response.status_code == 200, response.text
    api.post(f"/image/v2/images/{other['id']}/members", json={"member": "someone"},
             headers=admin_headers)
    images = api.get("/image/v2/images?sort=name:asc", headers=admin_headers).json()["images"]
    assert [i["name"] for i in images] == ["a", "b", "c"]
    for entry in images:
        shown = api.get(f"/image/v2/images/{entry['id']}", headers=admin_headers).json()
        assert list(entry.items()) == list(shown.items())  # the same fields, in that order
    assert images[0]["stores"] == "file" and images[0]["tags"] == ["b", "z"]
    assert images[0]["zeta"] == "3" and images[0]["middle"] == "m"
