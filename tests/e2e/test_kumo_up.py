"""`kumo up` as a user runs it: start, clouds.yaml, the real CLI, signals, restart, errors."""

from __future__ import annotations

import os
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import KumoProcess, start_kumo, stop_kumo

pytestmark = pytest.mark.e2e

BIN = Path(sys.executable).parent


def bare_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a fresh shell: nothing OpenStack-related set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OS_", "KUMO_"))}
    env.update(HOME=str(home), **extra)
    return env


def openstack(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "openstack"), *args], env=env, capture_output=True, text=True, timeout=120
    )


def stop_with(kumo: KumoProcess, sig: signal.Signals) -> tuple[int, float]:
    started = time.monotonic()
    kumo.process.send_signal(sig)
    code = kumo.process.wait(timeout=20)
    return code, time.monotonic() - started


def test_up_serves_writes_clouds_yaml_stops_and_restarts(tmp_path: Path) -> None:
    data = tmp_path / "data"
    home = tmp_path / "home"
    user_clouds = home / ".config" / "openstack" / "clouds.yaml"
    user_clouds.parent.mkdir(parents=True)
    other = {"auth": {"auth_url": "https://elsewhere.example/v3"}, "region_name": "X"}
    user_clouds.write_text(yaml.safe_dump({"clouds": {"elsewhere": other}}))

    began = time.monotonic()
    kumo = start_kumo(data)
    try:
        assert time.monotonic() - began < 20, "kumo up should be ready in a few seconds"
        assert httpx.get(f"{kumo.url}/healthcheck").status_code == 200
        banner = kumo.log.read_text()
        assert f"{kumo.url}/identity/v3" in banner and "user admin, project admin" in banner

        # The admin password is kept, private, and is the one printed.
        secret = data / "admin-password"
        assert secret.read_text().strip() == kumo.password
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600

        # DATA/clouds.yaml holds cloud `kumo`; the user's file got it too, beside `elsewhere`.
        own = yaml.safe_load(kumo.clouds_yaml.read_text())["clouds"]["kumo"]
        assert own["auth"] == {
            "auth_url": f"{kumo.url}/identity/v3", "username": "admin",
            "password": kumo.password, "project_name": "admin",
            "user_domain_name": "Default", "project_domain_name": "Default",
        }
        merged = yaml.safe_load(user_clouds.read_text())["clouds"]
        assert merged == {"elsewhere": other, "kumo": own}
        assert stat.S_IMODE(kumo.clouds_yaml.stat().st_mode) == 0o600

        # The README's command works with nothing else set.
        env = bare_env(tmp_path / "empty-home", OS_CLIENT_CONFIG_FILE=str(kumo.clouds_yaml))
        listed = openstack(env, "--os-cloud", "kumo", "image", "list", "-f", "value")
        assert listed.returncode == 0, listed.stderr
        made = openstack(env, "--os-cloud", "kumo", "user", "create", "--password", "pw",
                         "keeper")
        assert made.returncode == 0, made.stderr
        # DATA/openrc serves the clients that read only OS_* variables (glance).
        openrc = kumo.data_dir / "openrc"
        assert stat.S_IMODE(openrc.stat().st_mode) == 0o600
        glance = subprocess.run(
            ["bash", "-c", f'source "$1" && "{BIN}/glance" image-list', "sh", str(openrc)],
            env=bare_env(tmp_path / "empty-home"), capture_output=True, text=True, timeout=120,
        )
        assert glance.returncode == 0 and "ID" in glance.stdout, glance.stderr

        code, took = stop_with(kumo, signal.SIGTERM)
        assert code == 0 and took < 10
        log = kumo.log.read_text()
        assert "kumo stopped" in log and "Traceback" not in log
    finally:
        stop_kumo(kumo)

    # Same data dir again: same admin password, the user made before is still there.
    again = start_kumo(data, ("--no-user-config",))
    try:
        assert again.password == kumo.password
        env = bare_env(home, OS_CLIENT_CONFIG_FILE=str(again.clouds_yaml))
        users = openstack(env, "--os-cloud", "kumo", "user", "list", "-f", "value", "-c", "Name")
        assert users.returncode == 0, users.stderr
        assert set(users.stdout.split()) == {"admin", "keeper"}
        code, _ = stop_with(again, signal.SIGINT)
        assert code == 0
        assert "Traceback" not in again.log.read_text()
    finally:
        stop_kumo(again)


def run_up(data: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "kumo"), "up", "--data-dir", str(data), "--no-user-config", *args],
        env=bare_env(data.parent / "home"), capture_output=True, text=True, timeout=60,
    )


def test_port_in_use_is_a_clear_error(tmp_path: Path) -> None:
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    try:
        port = taken.getsockname()[1]
        result = run_up(tmp_path / "data", "--port", str(port))
    finally:
        taken.close()
    assert result.returncode != 0
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_config_file_is_a_clear_error(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "kumo.conf").write_text("[libvirt]\nvirt_type = xen\n")
    result = run_up(data, "--port", "0")
    assert result.returncode != 0
    assert "kumo.conf: [libvirt] virt_type: expected one of auto, kvm, qemu" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_running_kumo_keeps_its_data_dir(kumo_up: KumoProcess) -> None:
    """A second `kumo up` on the same data directory, and `kumo network cleanup` while it
    runs, are refused: both would take its guests' networks from under it."""
    refusal = (f"another kumo (pid {kumo_up.process.pid}) runs with data directory "
               f"{kumo_up.data_dir}")
    second = run_up(kumo_up.data_dir, "--port", "0")
    assert second.returncode != 0
    assert refusal in second.stderr and "Traceback" not in second.stderr
    cleanup = subprocess.run(
        [str(BIN / "kumo"), "network", "cleanup", "--force", "--data-dir",
         str(kumo_up.data_dir)], capture_output=True, text=True, timeout=60)
    assert cleanup.returncode != 0
    assert refusal in cleanup.stderr and "it would rebuild what this removes" in cleanup.stderr
    assert httpx.get(f"{kumo_up.url}/healthcheck").status_code == 200
    assert (kumo_up.data_dir / "kumo.pid").read_text() == f"{kumo_up.process.pid}\n"
