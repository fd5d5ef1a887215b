"""Block Storage discovery and the small routes: versions, catalog, URLs with a
project id, microversions, types, zones, extensions, messages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from kumo.runtime import Runtime
from kumo.volume.service import VolumeService
from tests.volume.conftest import LATEST, V3


def test_versions_document_at_root_and_v3(api: TestClient) -> None:
    root = api.get("/volume/")
    assert root.status_code == 300
    (version,) = root.json()["versions"]
    assert version["id"] == "v3.0" and version["status"] == "CURRENT"
    assert (version["min_version"], version["version"]) == ("3.0", "3.71")
    assert {"rel": "self", "href": "http://testserver/volume/v3/"} in version["links"]
    assert api.get("/volume/v3/").json()["versions"] == [version]


def test_catalog_names_block_storage_and_volumev3(api: TestClient,
                                                  admin_headers: dict[str, str]) -> None:
    token = admin_headers["X-Auth-Token"]
    catalog = api.get("/identity/v3/auth/tokens",
                      headers={**admin_headers, "X-Subject-Token": token}).json()["token"][
        "catalog"]
    by_type = {entry["type"]: entry for entry in catalog}
    for kind, name in (("block-storage", "cinder"), ("volumev3", "cinderv3")):
        assert by_type[kind]["name"] == name
        urls = {e["url"] for e in by_type[kind]["endpoints"]}
        assert urls == {"http://testserver/volume/v3"}


def test_microversion_header_and_bounds(api: TestClient, admin_headers: dict[str, str]) -> None:
    plain = api.get(f"{V3}/volumes", headers=admin_headers)
    assert plain.headers["OpenStack-API-Version"] == "volume 3.0"
    latest = api.get(f"{V3}/volumes", headers={**admin_headers,
                                                "OpenStack-API-Version": "volume latest"})
    assert latest.headers["OpenStack-API-Version"] == "volume 3.71"
    too_new = api.get(f"{V3}/volumes", headers={**admin_headers,
                                                 "OpenStack-API-Version": "volume 3.72"})
    assert too_new.status_code == 406
    assert "maximum is 3.71" in too_new.json()["computeFault"]["message"]


def test_project_id_in_the_url_is_optional_but_must_be_yours(
        api: TestClient, make_volume: Callable[..., dict[str, Any]],
        make_project_user: Callable[..., dict[str, str]], runtime: Runtime) -> None:
    alice = {**make_project_user("p1", "alice"), **LATEST}
    made = make_volume(who=alice, name="mine")
    project = made["os-vol-tenant-attr:tenant_id"]
    listed = api.get(f"{V3}/{project}/volumes/detail", headers=alice)
    assert [v["name"] for v in listed.json()["volumes"]] == ["mine"]
    assert api.get(f"{V3}/{project}/volumes/{made['id']}", headers=alice).status_code == 200
    other = api.get(f"{V3}/0123456789abcdef0123456789abcdef/volumes", headers=alice)
    assert other.status_code == 400
    assert "Malformed request url" in other.json()["badRequest"]["message"]


def test_not_found_is_novas_shape_and_a_trailing_slash_is_no_list(
        api: TestClient, headers: dict[str, str]) -> None:
    missing = api.get(f"{V3}/volumes/9c0c0cf0-0000-4000-8000-000000000000", headers=headers)
    assert missing.status_code == 404
    assert missing.json() == {"itemNotFound": {
        "code": 404, "message": "Volume 9c0c0cf0-0000-4000-8000-000000000000 could not be "
                                "found."}}
    assert api.get(f"{V3}/volumes/", headers=headers).status_code == 404
    assert api.get(f"{V3}/volumes", headers={}).status_code == 401


def test_one_default_type(api: TestClient, headers: dict[str, str]) -> None:
    (kind,) = api.get(f"{V3}/types", headers=headers).json()["volume_types"]
    assert kind["name"] == "__DEFAULT__" and kind["is_public"] is True
    for ref in (kind["id"], "default"):
        assert api.get(f"{V3}/types/{ref}", headers=headers).json()["volume_type"] == kind
    assert api.get(f"{V3}/types/nope", headers=headers).status_code == 404
    refused = api.post(f"{V3}/types", json={"volume_type": {"name": "ssd"}}, headers=headers)
    assert refused.status_code == 400 and "one volume type" in refused.text


def test_zones_and_extensions(api: TestClient, headers: dict[str, str]) -> None:
    zones = api.get(f"{V3}/os-availability-zone", headers=headers).json()
    assert zones == {"availabilityZoneInfo": [{"zoneName": "nova",
                                               "zoneState": {"available": True}}]}
    aliases = {e["alias"] for e in api.get(f"{V3}/extensions", headers=headers).json()[
        "extensions"]}
    assert {"os-volume-actions", "os-quota-sets", "os-vol-image-meta"} <= aliases


def test_a_failed_operation_leaves_a_user_message(
        api: TestClient, headers: dict[str, str], make_volume: Callable[..., dict[str, Any]],
        volumes: VolumeService) -> None:
    made = make_volume()
    volume_file = volumes.driver.settings.volumes_dir / f"volume-{made['id']}"
    volume_file.unlink()  # the backend loses the file: extending it must fail, and say so
    assert api.post(f"{V3}/volumes/{made['id']}/action", json={"os-extend": {"new_size": 2}},
                    headers=headers).status_code == 202
    volumes.wait_idle()
    shown = api.get(f"{V3}/volumes/{made['id']}", headers=headers).json()["volume"]
    assert shown["status"] == "error_extending" and shown["size"] == 1
    (message,) = api.get(f"{V3}/messages", headers=headers).json()["messages"]
    assert message["resource_uuid"] == made["id"] and message["message_level"] == "ERROR"
    assert "extending from 1 to 2 GB failed" in message["user_message"]
    assert api.get(f"{V3}/messages/{message['id']}", headers=headers).json()["message"] == \
        message
