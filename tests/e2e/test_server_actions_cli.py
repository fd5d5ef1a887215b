"""nova's server actions with the real `openstack` CLI against `kumo up`, on one real tiny guest.

One guest goes through pause, suspend, rebuild, resize, rescue and shelve, and each
step is checked from inside the guest over SSH (its uptime, its memory, its disks,
a file written to its disk) or on the host (QEMU's process, the guest's folder).
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import KumoProcess, password_token
from tests.e2e.test_compute_cli import KUMO, allow_ssh, as_json, qemu_running, run
from tests.guests import SSH_OPTIONS

pytestmark = [pytest.mark.e2e, pytest.mark.guest, pytest.mark.slow]
NAME = "e2e-actions"


class Api:
    """Polls kumo's compute API directly (an `openstack server show` per poll costs seconds
    of CLI start-up on a busy machine); the actions themselves go through the CLI."""

    def __init__(self, kumo: KumoProcess) -> None:
        self.client = httpx.Client(base_url=kumo.url, timeout=30)
        token = password_token(self.client, "admin", kumo.password, "admin")
        self.client.headers.update({"X-Auth-Token": token,
                                    "OpenStack-API-Version": "compute 2.96"})

    def server(self, server_id: str) -> dict[str, Any]:
        answer = self.client.get(f"/compute/v2.1/servers/{server_id}")
        assert answer.status_code == 200, answer.text
        return dict(answer.json()["server"])

    def wait(self, server_id: str, status: str, timeout: float = 300) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        shown: dict[str, Any] = {}
        while time.monotonic() < deadline:
            shown = self.server(server_id)
            if shown["status"] == status and not shown.get("OS-EXT-STS:task_state"):
                return shown
            if shown["status"] == "ERROR":
                break
            time.sleep(0.5)
        raise AssertionError(f"{NAME} did not reach {status}: {shown.get('status')} "
                             f"{shown.get('fault')}")

    def ssh(self, server_id: str, key: Path, command: str, timeout: float = 180) -> str:
        """Run `command` in the guest as `tiny` (retrying while it boots); its output."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            endpoint = self.server(server_id)["metadata"].get("kumo:ssh", "")
            if endpoint:
                port = endpoint.rsplit(":", 1)[1]
                result = subprocess.run(
                    ["ssh", "-i", str(key), "-p", port, *SSH_OPTIONS, "tiny@127.0.0.1",
                     command], capture_output=True, text=True, timeout=60, check=False)
                if result.returncode == 0:
                    return result.stdout
                last = result.stderr
            time.sleep(1)
        raise AssertionError(f"no SSH into {NAME} within {timeout}s: {last}")


def qemu_state(kumo: KumoProcess, server_id: str) -> str:
    """What QEMU's monitor says of the guest (running, paused, ...)."""
    from kumo.hypervisor.qmp import QMPClient

    sock = kumo.data_dir / "instances" / server_id / "qmp.sock"
    with QMPClient.connect(sock, timeout=5) as monitor:
        return str(monitor.execute("query-status")["status"])


@pytest.fixture
def resize_flavor(kumo_up: KumoProcess) -> Iterator[str]:
    run(kumo_up, "flavor", "create", "--vcpus", "1", "--ram", "640", "--disk", "2",
        "e2e.bigger", check=False)
    yield "e2e.bigger"
    run(kumo_up, "flavor", "delete", "e2e.bigger", check=False)


def test_pause_suspend_rebuild_resize_rescue_shelve(kumo_up: KumoProcess, tiny_image: Path,
                                                     tmp_path: Path,
                                                     resize_flavor: str) -> None:
    if run(kumo_up, "image", "show", "e2e-tiny", check=False).returncode != 0:
        run(kumo_up, "image", "create", "--file", str(tiny_image), "e2e-tiny", program=KUMO)
    key = tmp_path / "key"
    key.write_text(run(kumo_up, "keypair", "create", "e2e-actions-key").stdout)
    key.chmod(0o600)
    allow_ssh(kumo_up)
    try:
        _actions(kumo_up, key, resize_flavor)
    finally:  # guests outlive `kumo up` on purpose: remove ours, whatever happened
        run(kumo_up, "server", "delete", "--wait", NAME, check=False)
        run(kumo_up, "keypair", "delete", "e2e-actions-key", check=False)
        for image in as_json(kumo_up, "image", "list"):
            if str(image["Name"]).startswith(NAME):
                run(kumo_up, "image", "delete", str(image["ID"]), check=False)


def _actions(kumo: KumoProcess, key: Path, bigger: str) -> None:
    server = as_json(kumo, "server", "create", "--image", "e2e-tiny", "--flavor", "m1.tiny",
                     "--key-name", "e2e-actions-key", "--wait", NAME)
    sid = str(server["id"])
    api = Api(kumo)

    folder = kumo.data_dir / "instances" / sid
    api.ssh(sid, key, "echo before-rebuild | sudo tee /marker && sync")

    # pause: the vCPUs stop in QEMU; unpause: the same guest runs on
    run(kumo, "server", "pause", NAME)
    api.wait(sid, "PAUSED")
    assert qemu_state(kumo, sid) == "paused"
    run(kumo, "server", "unpause", NAME)
    api.wait(sid, "ACTIVE")
    uptime = float(api.ssh(sid, key, "cut -d' ' -f1 /proc/uptime"))

    # suspend: memory saved to disk, QEMU gone; resume: the guest goes on where it was
    run(kumo, "server", "suspend", NAME)
    api.wait(sid, "SUSPENDED")
    assert not qemu_running(sid) and (folder / "memory.state").is_file()
    run(kumo, "server", "resume", NAME)
    api.wait(sid, "ACTIVE")
    assert float(api.ssh(sid, key, "cut -d' ' -f1 /proc/uptime")) >= uptime  # not rebooted
    assert not (folder / "memory.state").exists()

    # rebuild: a new disk from the image, the file written before is gone
    run(kumo, "server", "rebuild", "--image", "e2e-tiny", NAME)
    api.wait(sid, "ACTIVE")
    assert api.ssh(sid, key, "cat /marker 2>/dev/null || echo fresh").strip() == "fresh"

    # resize: more RAM and a bigger disk, confirmed
    memory = int(api.ssh(sid, key, "grep MemTotal /proc/meminfo").split()[1])
    run(kumo, "server", "resize", "--flavor", bigger, NAME)
    api.wait(sid, "VERIFY_RESIZE")
    assert int(api.ssh(sid, key, "grep MemTotal /proc/meminfo").split()[1]) > memory + 100_000
    assert int(api.ssh(sid, key, "cat /sys/block/vda/size")) * 512 == 2 * 1024**3
    run(kumo, "server", "resize", "confirm", NAME)
    shown = api.wait(sid, "ACTIVE")
    assert shown["flavor"] and not (folder / "disk.resize-orig").exists()

    # rescue: the rescue image boots, the server's own disk is the second disk
    api.ssh(sid, key, "echo kept | sudo tee /marker && sync")
    run(kumo, "server", "rescue", NAME)
    api.wait(sid, "RESCUE")
    assert (folder / "disk.rescue").is_file()
    assert api.ssh(sid, key, "test -e /sys/block/vdb && echo two-disks").strip() == "two-disks"
    run(kumo, "server", "unrescue", NAME)
    api.wait(sid, "ACTIVE")
    assert api.ssh(sid, key, "test -e /sys/block/vdb || echo one-disk").strip() == "one-disk"
    api.ssh(sid, key, "sync")

    # shelve: snapshot, then the guest leaves the host; unshelve boots the snapshot
    run(kumo, "server", "shelve", NAME)
    api.wait(sid, "SHELVED_OFFLOADED")
    assert not qemu_running(sid) and not folder.exists()
    shelved = [i for i in api.client.get("/image/v2/images").json()["images"]
               if i["name"] == f"{NAME}-shelved"]
    assert shelved and shelved[0]["status"] == "active"
    run(kumo, "server", "unshelve", NAME)
    api.wait(sid, "ACTIVE")
    assert api.ssh(sid, key, "cat /marker").strip() == "kept"
    names = [i["name"] for i in api.client.get("/image/v2/images").json()["images"]]
    assert f"{NAME}-shelved" not in names  # deleted once the server runs again
