"""Volume API fixtures: kumo in-process with its real volume service and qcow2 driver."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from kumo.runtime import Runtime
from kumo.volume.service import VolumeService, volume_service_of
from tests.image.conftest import new_image, qcow2_file  # noqa: F401 - fixtures used here too

V3 = "/volume/v3"
LATEST = {"OpenStack-API-Version": "volume 3.71"}


@pytest.fixture
def volumes(runtime: Runtime) -> VolumeService:
    return volume_service_of(runtime)


@pytest.fixture
def headers(admin_headers: dict[str, str]) -> dict[str, str]:
    return {**admin_headers, **LATEST}


def wait_status(api: TestClient, headers: dict[str, str], kind: str, item_id: str,
                service: VolumeService, status: str = "available") -> dict[str, Any]:
    """The volume or snapshot once its background job is done (and in `status`)."""
    service.wait_idle()
    deadline = time.monotonic() + 30
    while True:
        body = api.get(f"{V3}/{kind}s/{item_id}", headers=headers).json()[kind]
        if body["status"] == status or time.monotonic() > deadline:
            assert body["status"] == status, body
            return dict(body)
        time.sleep(0.05)


@pytest.fixture
def make_volume(api: TestClient, headers: dict[str, str],
                volumes: VolumeService) -> Callable[..., dict[str, Any]]:
    def make(size: int = 1, *, who: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
        response = api.post(f"{V3}/volumes", json={"volume": {"size": size, **fields}},
                            headers={**(who or headers), **LATEST})
        assert response.status_code == 202, response.text
        return wait_status(api, {**(who or headers), **LATEST}, "volume",
                           response.json()["volume"]["id"], volumes)

    return make


def qemu_img(*args: str | Path) -> str:
    return subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True,
                          text=True).stdout
