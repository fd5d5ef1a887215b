"""The tiny image boots under QEMU and does what a cloud guest must (two boots).

1. Metadata service: DHCP lease, key/hostname/user data fetched over HTTP from
   169.254.169.254 (a test endpoint on a unix socket, relayed by QEMU's guestfwd),
   SSH login with the key, sudo, the user data script ran, wget as `tiny`, ACPI
   power button.
2. Config drive (`config-2` ISO, nova layout) and no metadata service.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pycdlib
import pytest

from tests.guests import MetadataEndpoint, make_ssh_key, running_guest

pytestmark = [pytest.mark.guest, pytest.mark.slow]

USER_DATA = b"#!/bin/sh\necho \"ran as $(id -u)\" > /root/user-data-ran\ntouch /tmp/ud-marker\n"


def test_boot_with_metadata_service(tiny_image: Path, tmp_path: Path) -> None:
    key, public_key = make_ssh_key(tmp_path)
    (tmp_path / "other").mkdir()
    other_key, _ = make_ssh_key(tmp_path / "other")
    metadata = MetadataEndpoint.ec2(tmp_path / "metadata.sock", instance_id="i-0000001",
                                    public_key=public_key, hostname="web-1.novalocal",
                                    user_data=USER_DATA)
    metadata.start()
    try:
        with running_guest(tiny_image, tmp_path / "guest", metadata=metadata) as guest:
            ssh_ready = guest.wait_for_console("tiny: ssh ready", timeout=180)
            login = guest.wait_for_ssh(key)
            print(f"\ntiny boot (metadata): 'ssh ready' at {ssh_ready:.1f} s, "
                  f"first SSH login at {login:.1f} s after QEMU started")
            console = guest.console()
            assert "tiny: eth0 got address 169.254." in console
            assert "tiny: got key from metadata" in console
            assert "/latest/meta-data/public-keys/0/openssh-key" in metadata.requests
            assert "/latest/user-data" in metadata.requests

            who = guest.ssh(key, "id -un; hostname; sudo id -u; sudo cat /root/user-data-ran")
            assert who.returncode == 0, who.stderr
            assert who.stdout.split("\n")[:4] == ["tiny", "web-1", "0", "ran as 0"]
            assert guest.ssh(other_key, "true").returncode != 0  # only the injected key
            # The network tools as the tiny user on QEMU's user network: wget (with -T),
            # the MTU left alone (QEMU's DHCP gives none), the metadata address on-link.
            probe = guest.ssh(key, "wget -q -T 5 -O - http://169.254.169.254/latest/meta-data/"
                                   "instance-id; echo; cat /sys/class/net/eth0/mtu; ip route")
            assert probe.returncode == 0, probe.stderr
            assert probe.stdout.split("\n")[:2] == ["i-0000001", "1500"]
            assert "169.254.0.0/16 dev eth0" in probe.stdout

            assert guest.powerdown(timeout=90) == 0  # ACPI button -> clean poweroff
            assert "tiny: power button pressed" in guest.console()
    finally:
        metadata.stop()


def config_drive(path: Path, meta_data: dict[str, object], user_data: bytes) -> Path:
    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=4, joliet=3, rock_ridge="1.09", vol_ident="config-2")
    for iso_path, name in (("/OPENSTACK", "openstack"), ("/OPENSTACK/LATEST", "latest")):
        iso.add_directory(iso_path, rr_name=name, joliet_path=iso_path.lower())
    for iso_name, name, data in (("META_DAT.JSO;1", "meta_data.json",
                                  json.dumps(meta_data).encode()),
                                 ("USER_DAT.;1", "user_data", user_data)):
        iso.add_fp(io.BytesIO(data), len(data), f"/OPENSTACK/LATEST/{iso_name}", rr_name=name,
                   joliet_path=f"/openstack/latest/{name}")
    iso.write(str(path))
    iso.close()
    return path


def test_boot_with_config_drive_only(tiny_image: Path, tmp_path: Path) -> None:
    key, public_key = make_ssh_key(tmp_path)
    drive = config_drive(tmp_path / "config.iso", {
        "uuid": "5b4e0d2c-8f5e-4a59-9d2b-1f1a3c3e9d10", "name": "db-1",
        "hostname": "db-1.novalocal", "public_keys": {"test-key": public_key + "\n"},
        "launch_index": 0, "meta": {},
    }, USER_DATA)
    with running_guest(tiny_image, tmp_path / "guest", config_drive=drive) as guest:
        guest.wait_for_console("tiny: ssh ready", timeout=180)
        login = guest.wait_for_ssh(key)
        print(f"\ntiny boot (config drive): first SSH login at {login:.1f} s")
        console = guest.console()
        assert "tiny: config drive found" in console
        assert "tiny: got key from config drive" in console
        assert "metadata service answered" not in console
        result = guest.ssh(key, "hostname; sudo cat /root/user-data-ran")
        assert result.stdout.split("\n")[:2] == ["db-1", "ran as 0"], result.stderr
