"""The real `openstack` CLI (and `kumo server ...`) against `kumo up`: boots real guests.

Two guest boots in all (the tiny image, then its snapshot): software emulation on
two cores is slow, so one server goes through every lifecycle step.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KumoProcess

pytestmark = pytest.mark.e2e
OPENSTACK = str(Path(sys.executable).with_name("openstack"))
KUMO = str(Path(sys.executable).with_name("kumo"))


def run(kumo: KumoProcess, *args: str, program: str = OPENSTACK, check: bool = True,
        timeout: float = 600) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([program, *args], env=kumo.env(), capture_output=True, text=True,
                            timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"{program} {' '.join(args)} failed:\n{result.stderr}")
    return result


def as_json(kumo: KumoProcess, *args: str) -> Any:
    return json.loads(run(kumo, *args, "-f", "json").stdout)


def qemu_running(server_id: str) -> bool:
    found = subprocess.run(["pgrep", "-f", f"qemu-system.*{server_id}"], capture_output=True)
    return found.returncode == 0


def ssh_until(kumo: KumoProcess, name: str, key: Path, timeout: float = 300) -> str:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        result = run(kumo, "server", "ssh", name, "-i", str(key), "--", "-o", "BatchMode=yes",
                     "-o", "ConnectTimeout=5", "uname", "-a", program=KUMO, check=False,
                     timeout=60)
        if result.returncode == 0 and "Linux" in result.stdout:
            return result.stdout
        last = result.stderr
        time.sleep(3)
    raise AssertionError(f"no SSH into {name} within {timeout}s: {last}")


def allow_ssh(kumo: KumoProcess) -> None:
    """Allow tcp/22 in the default group (the shared `kumo up` may have the rule already)."""
    result = run(kumo, "security", "group", "rule", "create", "--protocol", "tcp",
                 "--dst-port", "22", "default", check=False)
    if result.returncode != 0:
        assert "already exists" in result.stderr, result.stderr


def test_flavors_keypairs_and_rules(kumo_up: KumoProcess, tmp_path: Path) -> None:
    names = [f["Name"] for f in as_json(kumo_up, "flavor", "list")]
    assert names[:2] == ["m1.tiny", "m1.small"]
    made = as_json(kumo_up, "flavor", "create", "--vcpus", "1", "--ram", "128", "--disk", "1",
                   "e2e.flavor")
    assert made["ram"] == 128
    run(kumo_up, "flavor", "delete", "e2e.flavor")
    private = run(kumo_up, "keypair", "create", "e2e-gen").stdout
    assert private.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    pub = tmp_path / "id.pub"
    pub.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFSmXtvM0KXYKiGz9kGL9t9lfwBtazjmG9aKfv"
                   "OjEMa1 e2e\n")
    run(kumo_up, "keypair", "create", "--public-key", str(pub), "e2e-imported")
    listed = {k["Name"] for k in as_json(kumo_up, "keypair", "list")}
    assert {"e2e-gen", "e2e-imported"} <= listed
    bad = tmp_path / "bad.pub"
    bad.write_text("ssh-ed25519 not-a-key\n")
    assert run(kumo_up, "keypair", "create", "--public-key", str(bad), "e2e-bad",
               check=False).returncode != 0
    run(kumo_up, "keypair", "delete", "e2e-gen", "e2e-imported")
    rules = as_json(kumo_up, "security", "group", "rule", "create", "--protocol", "icmp",
                    "default")
    assert rules["protocol"] == "icmp"


@pytest.mark.guest
@pytest.mark.slow
def test_server_lifecycle_with_real_guest(kumo_up: KumoProcess, tiny_image: Path,
                                          tmp_path: Path) -> None:
    # `kumo image create` reads the login user from the image (os_admin_user), which
    # is how `kumo server ssh` knows to log in as `tiny`.
    created = run(kumo_up, "image", "create", "--file", str(tiny_image), "e2e-tiny",
                  program=KUMO)
    assert "os_admin_user=tiny" in created.stderr
    image = as_json(kumo_up, "image", "show", "e2e-tiny")
    assert image["status"] == "active"
    assert image["disk_format"] == "qcow2"
    assert image["properties"]["os_admin_user"] == "tiny"
    key = tmp_path / "key"
    key.write_text(run(kumo_up, "keypair", "create", "e2e-key").stdout)
    key.chmod(0o600)
    allow_ssh(kumo_up)
    try:
        _lifecycle(kumo_up, key)
    finally:  # guests outlive `kumo up` on purpose (adopted on restart): remove ours
        for name in ("e2e-vm", "e2e-clone"):
            run(kumo_up, "server", "delete", "--wait", name, check=False)


def _lifecycle(kumo_up: KumoProcess, key: Path) -> None:
    server = as_json(kumo_up, "server", "create", "--image", "e2e-tiny", "--flavor", "m1.tiny",
                     "--key-name", "e2e-key", "--wait", "e2e-vm")
    assert server["status"] == "ACTIVE"
    assert server["properties"]["kumo:ssh"].startswith("127.0.0.1:")
    sid = server["id"]
    assert "Linux e2e-vm" in ssh_until(kumo_up, "e2e-vm", key)
    _base_file_in_use(kumo_up, as_json(kumo_up, "image", "show", "e2e-tiny")["id"], sid)
    console = run(kumo_up, "console", "log", "show", "e2e-vm").stdout
    assert "Linux version" in console or "tiny:" in console
    run(kumo_up, "server", "stop", "e2e-vm")
    _wait_status(kumo_up, "e2e-vm", "SHUTOFF")
    assert not qemu_running(sid)
    run(kumo_up, "server", "start", "e2e-vm")
    _wait_status(kumo_up, "e2e-vm", "ACTIVE")
    run(kumo_up, "server", "reboot", "--hard", "--wait", "e2e-vm")
    ssh_until(kumo_up, "e2e-vm", key)
    snap = as_json(kumo_up, "server", "image", "create", "--name", "e2e-snap", "--wait",
                   "e2e-vm")
    assert snap["status"] == "active"
    run(kumo_up, "server", "delete", "--wait", "e2e-vm")
    assert not qemu_running(sid)
    assert not (kumo_up.data_dir / "instances" / sid).exists()
    clone = as_json(kumo_up, "server", "create", "--image", "e2e-snap", "--flavor", "m1.tiny",
                    "--key-name", "e2e-key", "--wait", "e2e-clone")
    assert clone["status"] == "ACTIVE"
    assert "Linux e2e-clone" in ssh_until(kumo_up, "e2e-clone", key)
    run(kumo_up, "server", "delete", "--wait", "e2e-clone")
    assert not qemu_running(clone["id"])


def _base_file_in_use(kumo: KumoProcess, image_id: str, server_id: str) -> None:
    """nova's _base naming; `kumo cache clean` never removes what a server uses."""
    base = hashlib.sha1(image_id.encode()).hexdigest()
    files = json.loads(run(kumo, "cache", "list", "-f", "json", program=KUMO).stdout)
    entry = next(f for f in files if f["Base file"] == base)
    assert entry["Image"] == image_id
    assert server_id in entry["In use by"] and entry["Verdict"] == "in use"
    run(kumo, "cache", "clean", program=KUMO)
    assert (kumo.data_dir / "instances" / "_base" / base).is_file()


def _wait_status(kumo: KumoProcess, name: str, status: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        shown = as_json(kumo, "server", "show", name)
        if shown["status"] == status and not shown.get("OS-EXT-STS:task_state"):
            return
        time.sleep(2)
    raise AssertionError(f"{name} did not reach {status}")
