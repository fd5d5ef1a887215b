"""`kumo cache list|clean` against the admin cache routes (in-process app)."""

from __future__ import annotations

import pytest
from starlette.testclient import TestClient
from typer.testing import CliRunner

from kumo.cli import cache as cache_cli
from kumo.cli.client import CloudClient
from kumo.cli.clouds import CloudConfig
from kumo.hypervisor.local import LocalHypervisor
from tests.conftest import ADMIN_PASSWORD
from tests.hypervisor.test_routes import client, hypervisor  # noqa: F401 (fixtures)


@pytest.fixture
def cli(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> CliRunner:  # noqa: F811
    config = CloudConfig(name="kumo", auth_url="http://testserver/identity/v3",
                         username="admin", password=ADMIN_PASSWORD, project_name="admin")

    def connect(_cloud: str | None = None) -> CloudClient:
        cloud = CloudClient(config, http=client)
        cloud.close = lambda: None  # type: ignore[method-assign]  # the fixture owns it
        cloud.authenticate()
        return cloud

    monkeypatch.setattr(cache_cli, "connect", connect)
    return CliRunner()


def test_list_shows_each_base_file(cli: CliRunner, hypervisor: LocalHypervisor) -> None:  # noqa: F811
    result = cli.invoke(cache_cli.app, ["list", "-f", "json"])
    assert result.exit_code == 0, result.output
    assert '"Image": "img-old"' in result.output and '"Verdict": "removable"' in result.output
    assert '"Verdict": "too young"' in result.output
    table = cli.invoke(cache_cli.app, ["list"])
    assert "img-new" in table.output and "too young" in table.output


def test_clean_dry_run_then_for_real(cli: CliRunner, hypervisor: LocalHypervisor) -> None:  # noqa: F811
    old = hypervisor.cache.base_path("img-old")
    dry = cli.invoke(cache_cli.app, ["clean", "--dry-run"])
    assert dry.exit_code == 0 and "would remove 1 base file(s)" in dry.output and old.exists()
    real = cli.invoke(cache_cli.app, ["clean"])
    assert real.exit_code == 0 and "removed 1 base file(s)" in real.output
    assert not old.exists()
