"""The external network kumo makes at first start, and its `[network]` options."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from kumo.config import ConfigError, Settings
from kumo.db.engine import session_scope
from kumo.network.bootstrap import ensure_external_network
from kumo.network.models import Network, Subnet
from kumo.server import prepare


def test_made_once_with_configured_range(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", admin_password="pw")
    settings.network.external_network_name = "ext"
    settings.network.external_cidr = "198.51.100.0/24"
    settings.network.external_allocation_pool = "198.51.100.100-198.51.100.150"
    runtime, _ = prepare(settings)
    try:
        with session_scope(runtime.sessions) as session:
            [network] = session.scalars(select(Network)).all()
            [subnet] = session.scalars(select(Subnet)).all()
            assert (network.name, network.external, network.is_default) == ("ext", True, True)
            assert subnet.gateway_ip == "198.51.100.1"
            assert subnet.allocation_pools == [{"start": "198.51.100.100",
                                                "end": "198.51.100.150"}]
            network.name = "renamed-by-the-operator"
        prepare(settings)  # a second start leaves it alone
        with session_scope(runtime.sessions) as session:
            assert [n.name for n in session.scalars(select(Network))] == [
                "renamed-by-the-operator"]
    finally:
        runtime.engine.dispose()


def test_bad_external_settings_stop_kumo(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", admin_password="pw")
    settings.network.external_allocation_pool = "172.24.4.1-172.24.4.9"  # holds the gateway
    with pytest.raises(ConfigError, match="conflicts with allocation pool"):
        prepare(settings)
    settings.network.external_allocation_pool = "nonsense"
    with pytest.raises(ConfigError, match="START-END"):
        prepare(settings)


def test_no_admin_project_no_network(tmp_path: Path) -> None:
    from kumo.runtime import build_runtime

    runtime = build_runtime(Settings(data_dir=tmp_path / "data"))
    try:
        with session_scope(runtime.sessions) as session:
            assert ensure_external_network(session, runtime.settings.network) is None
    finally:
        runtime.engine.dispose()
