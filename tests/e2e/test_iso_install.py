"""Seed 000 end to end: install from an ISO over the VGA console, image the disk, boot it.

The installer CD (`kumo image build installer`) is uploaded with disk_format iso and
booted: kumo attaches it as a CD-ROM next to a blank root disk of the flavor's size.
A plain VNC client library (vncdotool) drives it through kumo's websocket relay
(`openstack console url show --novnc`), pressing the key the installer waits for;
the installer writes kumo tiny to the disk and powers off. The snapshot of that disk
(not the ISO) boots on its own, and we log in over SSH.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import KumoProcess
from tests.e2e.consoles import private_copy, tcp_bridge, wait_for, ws_url_of
from tests.e2e.test_compute_cli import _wait_status, allow_ssh, as_json, run, ssh_until

pytestmark = [pytest.mark.e2e, pytest.mark.guest, pytest.mark.slow]


@pytest.fixture(scope="module")
def installer_iso(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kumo.imagebuild.installer import cached_image

    return private_copy(cached_image, tmp_path_factory.mktemp("iso") / "installer.iso")


@pytest.fixture
def artifacts() -> Path:
    folder = Path(os.environ.get("KUMO_TEST_ARTIFACTS", "test-artifacts")) / "iso-install"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def cleanup(kumo_up: KumoProcess) -> Iterator[None]:
    yield
    for server in ("iso-vm", "iso-clone"):
        run(kumo_up, "server", "delete", "--wait", server, check=False)
    for image in ("iso-installer", "iso-installed"):
        run(kumo_up, "image", "delete", image, check=False)
    run(kumo_up, "keypair", "delete", "iso-key", check=False)


def console_log(kumo: KumoProcess, server: str) -> str:
    return run(kumo, "console", "log", "show", server, check=False).stdout


def test_install_from_iso_over_vnc(kumo_up: KumoProcess, installer_iso: Path, tmp_path: Path,
                                   artifacts: Path, cleanup: None) -> None:
    from vncdotool import api as vnc

    run(kumo_up, "image", "create", "--disk-format", "iso", "--container-format", "bare",
        "--file", str(installer_iso), "iso-installer")
    key = tmp_path / "key"
    key.write_text(run(kumo_up, "keypair", "create", "iso-key").stdout)
    key.chmod(0o600)
    allow_ssh(kumo_up)
    server = as_json(kumo_up, "server", "create", "--image", "iso-installer", "--flavor",
                     "m1.tiny", "--wait", "iso-vm")
    assert server["status"] == "ACTIVE"
    folder = kumo_up.data_dir / "instances" / server["id"]
    assert '"cdrom"' in (folder / "instance.json").read_text()  # the ISO is the CD-ROM
    wait_for("the installer's prompt", lambda: "Press any key on this screen" in console_log(
        kumo_up, "iso-vm"), timeout=300, every=3)

    url = as_json(kumo_up, "console", "url", "show", "--novnc", "iso-vm")["url"]
    with tcp_bridge(ws_url_of(url), origin=kumo_up.url) as port:
        client = vnc.connect(f"127.0.0.1::{port}", timeout=60)
        try:
            client.captureScreen(str(artifacts / "installer-prompt.png"))
            client.keyPress("enter")
        finally:
            client.disconnect()
    wait_for("the installation", lambda: "Installation complete" in console_log(
        kumo_up, "iso-vm"), timeout=300, every=3)
    assert "installed and verified" in console_log(kumo_up, "iso-vm")
    _wait_status(kumo_up, "iso-vm", "SHUTOFF", timeout=120)

    snap = as_json(kumo_up, "server", "image", "create", "--name", "iso-installed", "--wait",
                   "iso-vm")
    assert snap["status"] == "active" and snap["disk_format"] == "qcow2"
    assert snap["virtual_size"] == 1024**3  # the flavor's blank disk, not the 35 MB ISO
    run(kumo_up, "server", "delete", "--wait", "iso-vm")
    # What an installer put on a disk only its user knows: name the login user, as one
    # names os_distro and friends after an install (kumo server ssh reads it).
    run(kumo_up, "image", "set", "--property", "os_admin_user=tiny", "iso-installed")
    clone = as_json(kumo_up, "server", "create", "--image", "iso-installed", "--flavor",
                    "m1.tiny", "--key-name", "iso-key", "--wait", "iso-clone")
    assert clone["status"] == "ACTIVE"
    clone_folder = kumo_up.data_dir / "instances" / clone["id"]
    assert '"cdrom"' not in (clone_folder / "instance.json").read_text()
    assert "Linux iso-clone" in ssh_until(kumo_up, "iso-clone", key)
