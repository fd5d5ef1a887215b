"""`kumo up`'s pieces in-process: admin password, clouds.yaml merging, binding, lifespan."""

from __future__ import annotations

import asyncio
import gc
import socket
import stat
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from kumo.config import Settings
from kumo.db.engine import session_scope
from kumo.identity.models import User
from kumo.runtime import Runtime
from kumo.server import (
    CloudsYamlError,
    admin_password,
    bind,
    cloud_entry,
    lifespan,
    serve,
    write_clouds_yaml,
)


@pytest.fixture(autouse=True)
def _unfreeze() -> Iterator[None]:
    """A lifespan freezes what is alive; the test process must not keep it forever."""
    yield
    gc.unfreeze()


def test_admin_password_is_generated_once_and_private(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    first = admin_password(settings)
    path = tmp_path / "admin-password"
    assert path.read_text().strip() == first and len(first) >= 16
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert admin_password(settings) == first
    assert admin_password(Settings(data_dir=tmp_path, admin_password="set")) == "set"


def test_clouds_yaml_merge_keeps_other_clouds(tmp_path: Path) -> None:
    path = tmp_path / "clouds.yaml"
    path.write_text(yaml.safe_dump({"clouds": {"work": {"auth": {"auth_url": "x"}}},
                                    "cache": {"expiration_time": 3}}))
    entry = cloud_entry(Settings(data_dir=tmp_path, port=5000), "pw")
    write_clouds_yaml(path, entry)
    document = yaml.safe_load(path.read_text())
    assert document["clouds"]["work"] == {"auth": {"auth_url": "x"}}
    assert document["cache"] == {"expiration_time": 3}
    kumo = document["clouds"]["kumo"]
    assert kumo["auth"]["auth_url"] == "http://127.0.0.1:5000/identity/v3"
    assert kumo["auth"]["password"] == "pw"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    write_clouds_yaml(path, cloud_entry(Settings(data_dir=tmp_path, port=6000), "pw2"))
    again = yaml.safe_load(path.read_text())["clouds"]
    assert set(again) == {"work", "kumo"} and again["kumo"]["auth"]["password"] == "pw2"


@pytest.mark.parametrize("text", ["clouds: [unclosed", "- a list\n", "clouds: 5\n"])
def test_a_clouds_yaml_kumo_cannot_understand_is_left_alone(tmp_path: Path, text: str) -> None:
    path = tmp_path / "clouds.yaml"
    path.write_text(text)
    with pytest.raises(CloudsYamlError, match=str(path)):
        write_clouds_yaml(path, {"auth": {}})
    assert path.read_text() == text


def test_port_in_use_is_a_clear_error() -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{port}: Address "
                                             "already in use"):
            bind("127.0.0.1", port)
    finally:
        taken.close()


def test_bad_config_stops_before_anything_starts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "kumo.conf").write_text("[DEFAULT]\nport = many\n")
    with pytest.raises(SystemExit, match=r"kumo: .*kumo.conf: \[DEFAULT\] port"):
        serve(data_dir=data, host=None, port=None, config_file=None, merge_user_clouds=False)
    assert not (data / "kumo.db").exists()


class FakeService:
    def __init__(self) -> None:
        self.calls: list[str] = []

    async def start(self) -> None:
        self.calls.append("start")

    async def stop(self) -> None:
        self.calls.append("stop")


def test_lifespan_writes_clouds_announces_and_stops_services(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("HOME", str(home))
    user_clouds = home / ".config" / "openstack" / "clouds.yaml"
    user_clouds.parent.mkdir(parents=True)
    user_clouds.write_text(yaml.safe_dump({"clouds": {"other": {"region_name": "R"}}}))
    service = FakeService()
    runtime.services["fake"] = service

    async def run() -> None:
        async with lifespan(runtime, "pw", merge=True):
            assert service.calls == ["start"]

    asyncio.run(run())
    assert service.calls == ["start", "stop"]
    out = capsys.readouterr().out
    assert "kumo is up at http://testserver" in out
    assert "password pw" in out
    own = yaml.safe_load((runtime.settings.data_dir / "clouds.yaml").read_text())
    assert list(own["clouds"]) == ["kumo"]
    merged = yaml.safe_load(user_clouds.read_text())["clouds"]
    assert merged["other"] == {"region_name": "R"}
    assert merged["kumo"] == own["clouds"]["kumo"]


def test_lifespan_leaves_start_up_objects_out_of_later_collections(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    gc.unfreeze()
    frozen = 0

    async def run() -> None:
        nonlocal frozen
        async with lifespan(runtime, "pw", merge=False):
            frozen = gc.get_freeze_count()

    asyncio.run(run())
    # the runtime, its engine and mappers are among them: a full collection skips them
    assert frozen > 10_000


def test_lifespan_without_merge_leaves_home_alone(
    runtime: Runtime, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    async def run() -> None:
        async with lifespan(runtime, "pw", merge=False):
            pass

    asyncio.run(run())
    assert (runtime.settings.data_dir / "clouds.yaml").exists()
    assert not (tmp_path / "home").exists()


def test_a_second_process_on_the_database_shares_keys_and_the_admin_password(
    runtime: Runtime, settings: Settings, tmp_path: Path
) -> None:
    """Another API process (or this one restarted): IMDSv2 tokens and Keystone tokens
    minted before still validate, and the admin logs in with the same password."""
    from kumo.identity import tokens
    from kumo.server import prepare

    imds_token = runtime.services["metadata"].tokens.issue("server-a", 600)
    with session_scope(runtime.sessions) as session:
        admin = session.scalar(select(User).where(User.name == "admin"))
        assert admin is not None
        keystone, _ = tokens.issue(session, admin.id, admin.default_project_id or "")
    other = replace(settings, admin_password="")
    if runtime.engine.dialect.name == "postgresql":
        other.data_dir = tmp_path / "another-host"  # its own data dir, the same database
    second, password = prepare(other)
    try:
        assert second.services["metadata"].tokens.valid("server-a", imds_token)
        with session_scope(second.sessions) as session:
            assert tokens.decode(session, keystone).user_id == admin.id
        if runtime.engine.dialect.name == "postgresql":
            assert password == settings.admin_password
    finally:
        second.engine.dispose()
