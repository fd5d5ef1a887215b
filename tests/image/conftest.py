"""Helpers for the image API tests: small real disk images made by qemu-img."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient


def qemu_img(*args: str | Path) -> None:
    subprocess.run(["qemu-img", *map(str, args)], check=True, capture_output=True)


@pytest.fixture
def qcow2_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", path, "64M")
    return path


@pytest.fixture
def new_image(api: TestClient, admin_headers: dict[str, str]) -> Callable[..., dict[str, Any]]:
    def make(headers: dict[str, str] | None = None, **fields: Any) -> dict[str, Any]:
        body = {"name": "img", "disk_format": "qcow2", "container_format": "bare", **fields}
        response = api.post("/image/v2/images", json=body, headers=headers or admin_headers)
        assert response.status_code == 201, response.text
        return dict(response.json())

    return make


def upload(
    api: TestClient, headers: dict[str, str], image_id: str, data: bytes, **extra: str
) -> Any:
    return api.put(
        f"/image/v2/images/{image_id}/file",
        content=data,
        headers={**headers, "Content-Type": "application/octet-stream", **extra},
    )
