"""A kumo API process on PostgreSQL (role `api`) with compute hosts in its registry.

No agent runs: tests read where the scheduler put servers and which jobs wait in which
host's queue; tests/e2e/test_multihost.py runs real agents.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from starlette.testclient import TestClient

from kumo.agent import registry
from kumo.agent.dispatch import JobDispatch
from kumo.compute.images import BootImage
from kumo.config import Settings
from kumo.db.engine import session_scope
from kumo.runtime import Runtime
from tests.compute.fakes import FakeImages

IMAGE_ID = "11111111-2222-4333-8444-555555555555"
V = "/compute/v2.1"


@pytest.fixture
def scaled(settings: Settings) -> Iterator[Runtime]:
    if not settings.database_url:
        pytest.skip("API processes share PostgreSQL (pytest --database=postgresql)")
    from kumo.server import prepare

    runtime, _ = prepare(settings, "api")
    compute = runtime.services["compute"]
    assert isinstance(compute, JobDispatch)
    fake = FakeImages()
    fake.add(BootImage(IMAGE_ID, "tiny", "active", virtual_size=64 * 1024**2))
    compute.images = fake
    yield runtime
    compute.jobs.close()
    runtime.engine.dispose()


@pytest.fixture
def client(scaled: Runtime) -> Iterator[TestClient]:
    from kumo.api.app import create_app

    with TestClient(create_app(scaled), base_url="http://testserver") as test_client:
        yield test_client


@pytest.fixture
def admin(client: TestClient) -> dict[str, str]:
    from tests.conftest import ADMIN_PASSWORD, password_token

    token = password_token(client, "admin", ADMIN_PASSWORD, "admin")
    return {"X-Auth-Token": token, "OpenStack-API-Version": "compute 2.79"}


@pytest.fixture
def add_host(scaled: Runtime) -> Callable[..., None]:
    """add_host("h1", memory_mb=4096, zone="az1", seen=0): a registered compute host."""
    def add(name: str, *, vcpus: int = 4, memory_mb: int = 4096, local_gb: int = 40,
            zone: str = "nova", seen: float = 0) -> None:
        facts = registry.HostFacts(vcpus=vcpus, memory_mb=memory_mb, local_gb=local_gb)
        with session_scope(scaled.sessions) as session:
            node = registry.register(session, name, facts,
                                     registry.Placement(availability_zone=zone),
                                     host_ip=f"10.0.0.{len(name)}")
            node.last_seen_at = datetime.now(UTC) - timedelta(seconds=seen)

    return add


@pytest.fixture
def boot(client: TestClient, admin: dict[str, str]) -> Callable[..., dict[str, Any]]:
    """boot("vm1", flavor="1", **server fields) -> the server as GET shows it."""
    def make(name: str, flavor: str = "1", hints: dict[str, Any] | None = None,
             **extra: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"server": {"name": name, "imageRef": IMAGE_ID,
                                           "flavorRef": flavor, "networks": "none", **extra}}
        if hints:
            body["os:scheduler_hints"] = hints
        created = client.post(f"{V}/servers", json=body, headers=admin)
        assert created.status_code == 202, created.text
        shown = client.get(f"{V}/servers/{created.json()['server']['id']}", headers=admin)
        return dict(shown.json()["server"])

    return make
