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
