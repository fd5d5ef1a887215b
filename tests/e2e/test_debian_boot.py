"""The Debian cloud image boots under QEMU and real cloud-init configures it from NoCloud.

Slow: builds the image once (cached under ~/.cache/kumo/images, ~1-2 min from nothing)
and boots it under software emulation (~40-60 s to SSH on 2 cores).
"""

from __future__ import annotations

import io
import subprocess
import time
from pathlib import Path

import pycdlib
import pytest

from kumo.imagebuild import debian
from tests.guests import make_ssh_key, running_guest

pytestmark = [pytest.mark.slow, pytest.mark.guest]
HOSTNAME = "kumo-deb-e2e"


def nocloud_seed(path: Path, public_key: str) -> Path:
    """A NoCloud seed ISO (volume label `cidata`) with meta-data and user-data."""
    files = {
        "meta-data": f"instance-id: i-e2e-{int(time.time())}\nlocal-hostname: {HOSTNAME}\n",
        "user-data": "#cloud-config\n"
                     f"ssh_authorized_keys:\n  - {public_key}\n"
                     "runcmd:\n  - [sh, -c, 'echo kumo-runcmd-ran > /run/kumo-runcmd']\n",
    }
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, joliet=3, rock_ridge="1.09", vol_ident="cidata")
    for name, text in files.items():
        data = text.encode()
        iso.add_fp(io.BytesIO(data), len(data), f"/{name.replace('-', '').upper()}.;1",
                   rr_name=name, joliet_path=f"/{name}")
    iso.write(str(path))
    iso.close()
    return path


def test_cloud_init_sets_hostname_and_key(tmp_path: Path) -> None:
    image = debian.cached_image()
    key, public_key = make_ssh_key(tmp_path)
    seed = nocloud_seed(tmp_path / "seed.iso", public_key)
    drive = f"file={seed},if=virtio,format=raw,readonly=on"
    # A 4 GiB disk for a 2 GiB image, as a bigger flavor would give.
    disk = tmp_path / "flavor-disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "qcow2",
                    str(disk), "4G"], check=True)
    with running_guest(disk, tmp_path / "guest", memory_mb=1024,
                       extra_args=["-drive", drive]) as guest:
        seconds = guest.wait_for_ssh(key, user="debian", timeout=420)
        print(f"debian: SSH as debian {seconds:.1f} s after QEMU started")
        assert guest.ssh(key, "hostname", user="debian").stdout.strip() == HOSTNAME
        status = guest.ssh(key, "cloud-init status --wait --long", user="debian", timeout=300)
        assert "status: done" in status.stdout, status.stdout + status.stderr
        assert guest.ssh(key, "cat /run/kumo-runcmd", user="debian").stdout.strip() == (
            "kumo-runcmd-ran")
        assert guest.ssh(key, "sudo -n id -u", user="debian").stdout.strip() == "0"
        # Per-instance identity made at first boot, not baked in.
        ids = guest.ssh(key, "cat /etc/machine-id; ls /etc/ssh/ssh_host_*_key.pub | wc -l",
                        user="debian").stdout.split()
        assert len(ids[0]) == 32 and int(ids[1]) >= 1
        # growpart + resize2fs grew / to the 4 GiB overlay's size (the image is 2 GiB).
        size = guest.ssh(key, "df -B1 --output=size / | tail -1", user="debian").stdout
        assert int(size) > 3 * 1024**3
        # The boot log reaches the serial console (console=ttyS0).
        assert "Cloud-init v." in guest.console() and "Linux version" in guest.console()
