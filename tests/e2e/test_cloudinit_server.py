"""Real cloud-init in the Debian image, configured through kumo's whole path.

`openstack server create` -> compute -> hypervisor (QEMU, SMBIOS "OpenStack Nova")
-> metadata service at 169.254.169.254 (or a config drive) -> cloud-init. Every
assertion is made over SSH inside the guest. Two Debian guests boot at once (one per
datasource) to keep the wall time of software emulation down.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import pytest

from tests.conftest import KumoProcess
from tests.e2e.test_compute_cli import KUMO, allow_ssh, as_json, run, ssh_until

pytestmark = [pytest.mark.e2e, pytest.mark.guest, pytest.mark.slow]

# Seed 001's cloud-config: password + chpasswd + ssh_pwauth, bootcmd, runcmd.
USER_DATA = """#cloud-config
password: kumo-Passw0rd
chpasswd: { expire: False }
ssh_pwauth: True
bootcmd:
  - echo bootcmd-ran > /var/tmp/kumo-bootcmd
runcmd:
  - echo runcmd-ran > /var/tmp/kumo-runcmd
  - [ sh, -c, "echo $(hostname) > /var/tmp/kumo-runcmd-hostname" ]
"""
SSH_FAILED = 255
SERVERS = {"ci-metadata": "DataSourceOpenStack", "ci-drive": "DataSourceConfigDrive"}


def guest(kumo: KumoProcess, name: str, key: Path, command: str) -> str:
    """Run `command` in the guest over SSH.

    The first SSH login can come before cloud-init's config stage, whose `ssh_pwauth`
    restarts sshd: a connection in that moment is closed before the key exchange, and
    ssh exits 255 (its own failure, never the command's). Those are tried again.
    """
    deadline = time.monotonic() + 120
    while True:
        result = run(kumo, "server", "ssh", name, "-i", str(key), "--", "-o", "BatchMode=yes",
                     "-o", "ConnectTimeout=10", command, program=KUMO, check=False,
                     timeout=300)
        if result.returncode != SSH_FAILED or time.monotonic() > deadline:
            break
        time.sleep(3)
    assert result.returncode == 0, f"{command!r} in {name} failed: {result.stderr}"
    return result.stdout


def test_cloud_init_configures_debian_from_kumo(
    kumo_up: KumoProcess, debian_image: Path, tmp_path: Path
) -> None:
    run(kumo_up, "image", "create", "--file", str(debian_image), "ci-debian", program=KUMO)
    assert as_json(kumo_up, "image", "show", "ci-debian")["properties"]["os_admin_user"] == (
        "debian")
    run(kumo_up, "flavor", "create", "--vcpus", "2", "--ram", "1024", "--disk", "4",
        "ci.debian")
    key = tmp_path / "key"
    key.write_text(run(kumo_up, "keypair", "create", "ci-key").stdout)
    key.chmod(0o600)
    allow_ssh(kumo_up)
    user_data = tmp_path / "user-data"
    user_data.write_text(USER_DATA)
    try:
        for name in SERVERS:
            extra = ["--config-drive", "true"] if name == "ci-drive" else []
            run(kumo_up, "server", "create", "--image", "ci-debian", "--flavor", "ci.debian",
                "--key-name", "ci-key", "--user-data", str(user_data), *extra, name)
        for name, datasource in SERVERS.items():
            _check_guest(kumo_up, name, datasource, key)
    finally:
        for name in SERVERS:
            run(kumo_up, "server", "delete", "--wait", name, check=False)


def _check_guest(kumo: KumoProcess, name: str, datasource: str, key: Path) -> None:
    ssh_until(kumo, name, key, timeout=600)
    status = guest(kumo, name, key, "cloud-init status --wait --long")
    assert "status: done" in status, status
    result = json.loads(guest(kumo, name, key, "cat /run/cloud-init/result.json"))
    assert result["v1"]["datasource"].startswith(datasource), result
    assert result["v1"]["errors"] == []
    # The hostname is the server's name, and runcmd/bootcmd ran.
    assert guest(kumo, name, key, "hostname").strip() == name
    assert guest(kumo, name, key, "cat /var/tmp/kumo-runcmd").strip() == "runcmd-ran"
    assert guest(kumo, name, key, "cat /var/tmp/kumo-bootcmd").strip() == "bootcmd-ran"
    assert guest(kumo, name, key, "cat /var/tmp/kumo-runcmd-hostname").strip() == name
    # password + chpasswd: the default user has a real password hash; ssh_pwauth: on.
    shadow = guest(kumo, name, key, "sudo getent shadow debian").split(":")
    assert shadow[1].startswith("$"), shadow
    sshd = guest(kumo, name, key, "sudo sshd -T")
    assert "passwordauthentication yes" in sshd
    # The key came from the server's key pair, for the image's default user.
    public = run(kumo, "keypair", "show", "--public-key", "ci-key").stdout.split()[1]
    assert public in guest(kumo, name, key, "cat ~/.ssh/authorized_keys")
    # The MTU from network_data.json (1450, seed 001's VXLAN advice) is on the interface.
    links = guest(kumo, name, key, "ip -o link show")
    assert any("mtu 1450" in line for line in links.splitlines() if "link/ether" in line), links
    # The user data arrived byte for byte.
    fetched = guest(kumo, name, key, "sudo base64 -w0 /var/lib/cloud/instance/user-data.txt")
    assert base64.b64decode(fetched) == USER_DATA.encode()
