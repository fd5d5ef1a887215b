"""`/compute/v2.1/os-kumo-cache`: admin only, lists and cleans the image cache."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Mount
from starlette.testclient import TestClient

from kumo.api.errors import Flavor
from kumo.api.parts import part_app
from kumo.hypervisor.local import LocalHypervisor
from kumo.hypervisor.routes import routes
from kumo.runtime import Runtime
from tests.conftest import ADMIN_PASSWORD, password_token
from tests.hypervisor.test_imagecache import FakeFetcher, make_image


@pytest.fixture
def hypervisor(runtime: Runtime, tmp_path: Path) -> LocalHypervisor:
    fetcher = FakeFetcher()
    fetcher.add("img-old", make_image(tmp_path / "old.raw", "raw"), "raw")
    fetcher.add("img-new", make_image(tmp_path / "new.raw", "raw"), "raw")
    hv = LocalHypervisor(runtime.settings, fetcher)
    old = hv.cache.ensure_base("img-old").path
    os.utime(old, (1, 1))  # decades old
    hv.cache.ensure_base("img-new")
    runtime.services["hypervisor"] = hv
    return hv


@pytest.fixture
def client(runtime: Runtime, hypervisor: LocalHypervisor) -> Iterator[TestClient]:
    from kumo.identity.middleware import TokenMiddleware
    from kumo.identity.routes import build_app as identity_app

    app = Starlette(
        routes=[
            Mount("/identity", app=identity_app(runtime)),
            Mount("/compute", app=part_app(runtime, routes(), Flavor.COMPUTE)),
        ],
        middleware=[Middleware(TokenMiddleware, runtime=runtime)],
    )
    with TestClient(app, base_url="http://testserver") as test_client:
        yield test_client


def admin(client: TestClient) -> dict[str, str]:
    return {"X-Auth-Token": password_token(client, "admin", ADMIN_PASSWORD, "admin")}


def test_list_shows_verdicts(client: TestClient, hypervisor: LocalHypervisor) -> None:
    response = client.get("/compute/v2.1/os-kumo-cache", headers=admin(client))
    assert response.status_code == 200, response.text
    files = {f["image_id"]: f for f in response.json()["base_files"]}
    assert files["img-old"]["verdict"] == "removable"
    assert files["img-new"]["verdict"] == "too young"
    assert files["img-new"]["size"] == 8 * 1024 * 1024
    assert files["img-new"]["used_by"] == []


def test_clean_dry_run_then_for_real(client: TestClient, hypervisor: LocalHypervisor) -> None:
    headers = admin(client)
    old = hypervisor.cache.base_path("img-old")
    dry = client.post("/compute/v2.1/os-kumo-cache/clean", json={"dry_run": True},
                      headers=headers)
    assert dry.status_code == 200 and dry.json()["removed"] == [] and old.exists()
    real = client.post("/compute/v2.1/os-kumo-cache/clean", headers=headers)
    assert real.status_code == 200
    assert real.json()["removed"] == [old.name] and not old.exists()
    assert hypervisor.cache.base_path("img-new").exists()


def test_bad_body_is_a_400(client: TestClient) -> None:
    response = client.post("/compute/v2.1/os-kumo-cache/clean", json={"dry_run": "yes"},
                           headers=admin(client))
    assert response.status_code == 400
    assert "dry_run" in response.json()["badRequest"]["message"]


def test_members_are_refused(client: TestClient, runtime: Runtime) -> None:
    from sqlalchemy import select

    from kumo.db.engine import session_scope
    from kumo.identity.models import Project, Role, RoleAssignment, User
    from kumo.identity.passwords import hash_password

    with session_scope(runtime.sessions) as session:
        project, user = Project(name="p1"), User(name="alice", password_hash=hash_password("pw"))
        session.add_all([project, user])
        session.flush()
        member = session.scalar(select(Role).where(Role.name == "member"))
        assert member is not None
        session.add(RoleAssignment(user_id=user.id, project_id=project.id, role_id=member.id))
    token = password_token(client, "alice", "pw", "p1")
    response = client.get("/compute/v2.1/os-kumo-cache", headers={"X-Auth-Token": token})
    assert response.status_code == 403
    assert client.get("/compute/v2.1/os-kumo-cache").status_code == 401
