"""`kumo up --database postgresql://...`: the real CLI against kumo on PostgreSQL."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KumoProcess, start_kumo, stop_kumo
from tests.postgres import PostgresCluster

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def openstack(kumo: KumoProcess, *args: str) -> str:
    result = subprocess.run([str(BIN / "openstack"), *args], env=kumo.env(),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def database(postgres: PostgresCluster) -> Iterator[str]:
    url = postgres.create_database("e2e_up")
    yield url
    postgres.drop_database("e2e_up")


def test_up_on_postgresql_keeps_everything_in_the_database(
        tmp_path: Path, database: str) -> None:
    first = start_kumo(tmp_path / "one" / "data", ("--no-user-config", "--database", database))
    try:
        image = tmp_path / "disk.raw"
        image.write_bytes(b"\0" * 65536)
        openstack(first, "image", "create", "--disk-format", "raw", "--container-format",
                  "bare", "--file", str(image), "pg-image")
        assert not (first.data_dir / "kumo.db").exists()
    finally:
        stop_kumo(first)
    # Another data directory (another host), the same database: same admin, same records.
    second = start_kumo(tmp_path / "two" / "data", ("--no-user-config", "--database", database))
    try:
        assert second.password == first.password
        listed = openstack(second, "image", "list", "-f", "value", "-c", "Name", "-c", "Status")
        assert "pg-image active" in listed
        assert "m1.tiny" in openstack(second, "flavor", "list", "-f", "value")
    finally:
        stop_kumo(second)

