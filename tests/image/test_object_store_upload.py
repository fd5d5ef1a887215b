"""Glance uploads and downloads with image bytes in Swift and in S3 (Swift's s3api)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from kumo.config import Settings
from kumo.image.recovery import recover
from kumo.runtime import Runtime
from tests.image.conftest import qemu_img, upload
from tests.store.test_object_stores import store_settings
from tests.swift import SwiftCluster


@pytest.fixture(params=["swift", "s3"])
def settings(settings: Settings, swift: SwiftCluster, request: pytest.FixtureRequest) -> Settings:
    settings.store = store_settings(request.param, swift)
    return settings


def test_upload_streams_into_the_object_store_with_both_hashes(
        api: TestClient, admin_headers: dict[str, str], runtime: Runtime) -> None:
    data = os.urandom(11 * 1024 * 1024 + 7)
    image = api.post("/image/v2/images", headers=admin_headers, json={
        "name": "in-the-store", "disk_format": "raw", "container_format": "bare"}).json()
    assert upload(api, admin_headers, image["id"], data).status_code == 204
    shown = api.get(f"/image/v2/images/{image['id']}", headers=admin_headers).json()
    assert shown["status"] == "active" and shown["size"] == len(data)
    assert shown["checksum"] == hashlib.md5(data).hexdigest()
    assert shown["os_hash_value"] == hashlib.sha512(data).hexdigest()
    kind = runtime.settings.store.default_store
    [location] = runtime.store.locations()
    assert location.startswith(f"{kind}://") and location.endswith(image["id"])
    assert not runtime.settings.images_dir.exists() or not any(
        runtime.settings.images_dir.iterdir())
    got = api.get(f"/image/v2/images/{image['id']}/file", headers=admin_headers)
    assert got.status_code == 200 and got.content == data
    part = api.get(f"/image/v2/images/{image['id']}/file", headers={
        **admin_headers, "Range": "bytes=6291450-6291460"})
    assert part.status_code == 206 and part.content == data[6291450:6291461]
    assert api.delete(f"/image/v2/images/{image['id']}", headers=admin_headers).status_code == 204
    assert runtime.store.locations() == []


def test_a_refused_image_leaves_nothing_in_the_store(
        api: TestClient, admin_headers: dict[str, str], runtime: Runtime,
        tmp_path: Path) -> None:
    backing = tmp_path / "secret"
    backing.write_bytes(b"s" * 4096)
    bad = tmp_path / "bad.qcow2"  # a backing file pointing into the host: refused
    qemu_img("create", "-q", "-f", "qcow2", "-b", backing, "-F", "raw", bad, "64M")
    image = api.post("/image/v2/images", headers=admin_headers, json={
        "name": "bad", "disk_format": "qcow2", "container_format": "bare"}).json()
    response = upload(api, admin_headers, image["id"], bad.read_bytes())
    assert response.status_code == 400, response.text
    shown = api.get(f"/image/v2/images/{image['id']}", headers=admin_headers).json()
    assert shown["status"] == "queued"
    assert runtime.store.locations() == [] and runtime.store.sweep_partial() == []
    recover(runtime)  # and a start-up sweep finds nothing to repair
    assert runtime.store.locations() == []
