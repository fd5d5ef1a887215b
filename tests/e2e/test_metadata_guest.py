"""The tiny guest against kumo's own metadata service and config drive.

One boot with its metadata address relayed (guestfwd + socat) to server A's channel
of a real `MetadataService` (server B has a channel too): the guest fetches its key
and user data by plain HTTP like the seeds' rc.local scripts, we SSH in with that key,
and from inside the guest requests posing as server B get only A's data. A second boot
reads the same from a config drive instead.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kumo.config import MetadataSettings
from kumo.metadata.configdrive import build_config_drive
from kumo.metadata.instance import InstanceView, PublicKey
from kumo.metadata.service import MetadataService
from tests.guests import make_ssh_key, running_guest

pytestmark = [pytest.mark.guest]

SERVER_A = "a1a1a1a1-0000-4000-8000-00000000000a"
SERVER_B = "b2b2b2b2-0000-4000-8000-00000000000b"
USER_DATA = b"#!/bin/sh\necho kumo-user-data-ran-as-$(id -u)\n"


def view(uuid: str, name: str, public_key: str, user_data: bytes) -> InstanceView:
    return InstanceView(
        uuid=uuid, name=name, hostname=name, project_id="proj-" + name,
        created_at=datetime.now(UTC), instance_type="m1.tiny",
        keys=(PublicKey("key-" + name, "ssh", public_key),), user_data=user_data,
    )


class Source:
    def __init__(self, *views: InstanceView) -> None:
        self.views = {v.uuid: v for v in views}

    def lookup(self, server_id: str) -> InstanceView | None:
        return self.views.get(server_id)


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, str, str]:
    for folder in ("a", "b"):
        (tmp_path / folder).mkdir()
    key_a, public_a = make_ssh_key(tmp_path / "a")
    _, public_b = make_ssh_key(tmp_path / "b")
    return key_a, public_a, public_b


@pytest.fixture
def service(keys: tuple[Path, str, str], tmp_path: Path) -> Iterator[MetadataService]:
    _, public_a, public_b = keys
    source = Source(
        view(SERVER_A, "alpha", public_a, gzip.compress(USER_DATA)),  # binary on the wire
        view(SERVER_B, "bravo", public_b, b"#!/bin/sh\necho bravo-secret\n"),
    )
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    service = MetadataService(source, tmp_path / "run", MetadataSettings())
    asyncio.run_coroutine_threadsafe(service.start(), loop).result(10)
    yield service
    asyncio.run_coroutine_threadsafe(service.stop(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_guest_gets_only_its_own_metadata(
    tiny_image: Path, service: MetadataService, keys: tuple[Path, str, str], tmp_path: Path
) -> None:
    key_a, _, public_b = keys
    channel = service.open_channel(SERVER_A)  # as the compute part does from a worker
    service.open_channel(SERVER_B)
    relay = f"guestfwd=tcp:169.254.169.254:80-cmd:socat - UNIX-CONNECT:{channel}"
    with running_guest(tiny_image, tmp_path / "guest", netdev_extra=relay) as guest:
        guest.wait_for_console("tiny: got key from metadata", timeout=240)
        guest.wait_for_ssh(key_a, timeout=240)  # the key it fetched lets us in

        def sh(command: str) -> str:
            result = guest.ssh(key_a, command)
            assert result.returncode == 0, result.stderr
            return result.stdout

        assert sh("hostname").strip() == "alpha"
        guest.wait_for_console("tiny: user data exited with status 0", timeout=60)
        assert sh("sudo cat /var/log/user-data.log").strip() == "kumo-user-data-ran-as-0"

        posing = ("--header 'X-Instance-ID: {b}' --header 'X-Tenant-ID: proj-bravo' "
                  "--header 'X-Forwarded-For: 169.254.2.16' "
                  "--header 'X-Instance-ID-Signature: {sig}'").format(b=SERVER_B, sig="0" * 64)
        url = "http://169.254.169.254"
        get = f"timeout 10 wget -q -O - {posing}"
        md = json.loads(sh(f"{get} {url}/openstack/latest/meta_data.json"))
        assert md["uuid"] == SERVER_A and md["name"] == "alpha"
        assert public_b not in json.dumps(md)
        assert sh(f"timeout 10 wget -q -O - {posing} {url}/latest/meta-data/hostname") == "alpha"
        spoofed_path = f"{url}/openstack/latest/meta_data.json?instance_id={SERVER_B}"
        assert json.loads(sh(f"{get} '{spoofed_path}'"))["uuid"] == SERVER_A
        user_data = sh(f"timeout 10 wget -q -O - {posing} {url}/latest/user-data | gunzip -c")
        assert user_data.encode() == USER_DATA  # gzip bytes survived the trip

        # IMDSv2 from the guest over HTTP/1.0 (busybox nc), then a GET with the token.
        put = ("printf 'PUT /latest/api/token HTTP/1.0\\r\\n"
               "X-aws-ec2-metadata-token-ttl-seconds: 60\\r\\n\\r\\n' "
               "| timeout 10 nc 169.254.169.254 80")
        reply = sh(put)
        assert reply.startswith("HTTP/1.1 200"), reply
        token = reply.replace("\r\n", "\n").split("\n\n", 1)[1].strip()
        got = sh(f"timeout 10 wget -q -O - --header 'X-aws-ec2-metadata-token: {token}' "
                 f"{url}/latest/meta-data/instance-id")
        assert got.startswith("i-")
        refused = sh(f"timeout 10 wget -q -O - --header 'X-aws-ec2-metadata-token: x{token}' "
                     f"{url}/latest/meta-data/instance-id >/dev/null 2>&1; echo $?")
        assert refused.strip() != "0"


def test_guest_reads_a_config_drive(
    tiny_image: Path, keys: tuple[Path, str, str], tmp_path: Path
) -> None:
    key_a, public_a, _ = keys
    drive = build_config_drive(
        view(SERVER_A, "charlie", public_a, USER_DATA), tmp_path / "disk.config"
    )
    with running_guest(tiny_image, tmp_path / "guest", config_drive=drive) as guest:
        guest.wait_for_console("tiny: config drive found", timeout=240)
        guest.wait_for_ssh(key_a, timeout=240)
        result = guest.ssh(key_a, "hostname; sudo cat /var/log/user-data.log")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == ["charlie", "kumo-user-data-ran-as-0"]
