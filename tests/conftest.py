"""Fixtures shared by the whole suite.

- `runtime` / `api`: kumo in-process on a fresh data dir, driven over HTTP with
  Starlette's TestClient (real routing, middleware, database and store).
- `admin_headers`, `make_project_user`: real tokens from POST /v3/auth/tokens.
- `kumo_up` (tests/e2e): a real `kumo up` process for the real OpenStack clients.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select
from starlette.testclient import TestClient

from kumo.config import Settings
from kumo.conformance.process import KumoProcess, start_kumo, stop_kumo
from kumo.db.engine import session_scope
from kumo.runtime import Runtime
from kumo.server import prepare

pytest_plugins = ["tests.guests", "tests.postgres", "tests.swift"]

ADMIN_PASSWORD = "test-admin-password"


@pytest.fixture
def settings(tmp_path: Path, database_url: str) -> Settings:
    settings = Settings(data_dir=tmp_path / "data", admin_password=ADMIN_PASSWORD,
                        database_url=database_url)
    # In-process API tests never start the agent's namespace; tests/network and the
    # e2e tests build real networks on purpose.
    settings.network.driver = "user"
    settings.identity.password_hash_rounds = 4  # bcrypt's floor: tests log in a lot
    settings.host, settings.port = "testserver", 80
    settings.public_url = "http://testserver"
    return settings


@pytest.fixture
def runtime(settings: Settings) -> Iterator[Runtime]:
    runtime, _ = prepare(settings)
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def api(runtime: Runtime) -> Iterator[TestClient]:
    from kumo.api.app import create_app

    with TestClient(create_app(runtime), base_url="http://testserver") as client:
        yield client


def password_token(
    client: TestClient | httpx.Client, user: str, password: str, project: str
) -> str:
    body = {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {
                    "user": {"name": user, "domain": {"id": "default"}, "password": password}
                },
            },
            "scope": {"project": {"name": project, "domain": {"id": "default"}}},
        }
    }
    response = client.post("/identity/v3/auth/tokens", json=body)
    assert response.status_code == 201, response.text
    return response.headers["X-Subject-Token"]


@pytest.fixture
def admin_headers(api: TestClient) -> dict[str, str]:
    return {"X-Auth-Token": password_token(api, "admin", ADMIN_PASSWORD, "admin")}


@pytest.fixture
def make_project_user(
    api: TestClient, runtime: Runtime
) -> Callable[..., dict[str, str]]:
    """make_project_user("p1", "alice", roles=("member",)) -> headers with alice's token.

    Creates the project and user directly in the database (identity's own API is
    tested in tests/identity), then authenticates over HTTP like any client.
    """
    from kumo.identity.models import Project, Role, RoleAssignment, User
    from kumo.identity.passwords import hash_password

    def make(project: str, user: str, roles: tuple[str, ...] = ("member",)) -> dict[str, str]:
        with session_scope(runtime.sessions) as session:
            proj = session.scalar(select(Project).where(Project.name == project))
            if proj is None:
                proj = Project(name=project)
                session.add(proj)
            account = session.scalar(select(User).where(User.name == user))
            if account is None:
                account = User(name=user, password_hash=hash_password("pw-" + user))
                session.add(account)
            session.flush()
            for name in roles:
                role = session.scalar(select(Role).where(Role.name == name))
                assert role is not None
                session.add(
                    RoleAssignment(user_id=account.id, project_id=proj.id, role_id=role.id)
                )
        return {"X-Auth-Token": password_token(api, user, "pw-" + user, project)}

    return make


@pytest.fixture(scope="session")
def kumo_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KumoProcess]:
    """One `kumo up` shared by the e2e tests of a session (they use their own names)."""
    kumo = start_kumo(tmp_path_factory.mktemp("kumo-up") / "data", ("--no-user-config",))
    yield kumo
    stop_kumo(kumo)
