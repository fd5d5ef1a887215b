"""The service over real unix sockets: identity by channel, IMDSv2, channel lifecycle."""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import socket
import time
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from kumo.metadata.service import MetadataService, channel_dir
from tests.metadata.conftest import (
    BINARY_USER_DATA,
    SERVER_A,
    SERVER_B,
    FakeSource,
    Running,
    make_view,
    raw_exchange,
    request,
)

POSING_AS_B = {
    "X-Instance-ID": SERVER_B,
    "X-Tenant-ID": "proj-bravo",
    "X-Forwarded-For": "169.254.2.16",
    "X-Instance-ID-Signature": "0" * 64,
    "X-Real-IP": "169.254.2.16",
    "Host": "169.254.169.254",
}


def test_a_channel_answers_with_its_own_server(running: Running) -> None:
    path = running.service.open_channel(SERVER_A)
    assert path.exists() and path.name == f"{SERVER_A}.sock"
    reply = request(path, "/latest/meta-data/public-keys/0/openssh-key")
    assert reply.status == 200 and reply.body == b"ssh-ed25519 AAAAC3Nzaalpha alpha@test"
    md = json.loads(request(path, "/openstack/latest/meta_data.json").body)
    assert md["uuid"] == SERVER_A and md["name"] == "alpha"


def test_headers_naming_another_server_are_ignored(running: Running) -> None:
    a = running.service.open_channel(SERVER_A)
    running.service.open_channel(SERVER_B)
    for target in ("/latest/meta-data/instance-id", "/openstack/latest/meta_data.json",
                   "/latest/user-data", f"/openstack/latest/meta_data.json?uuid={SERVER_B}",
                   f"http://169.254.169.254/latest/meta-data/hostname?instance={SERVER_B}"):
        reply = request(a, target, headers=POSING_AS_B)
        assert reply.status == 200
        assert b"bravo" not in reply.body and SERVER_B.encode() not in reply.body
    assert request(a, "/latest/meta-data/hostname", headers=POSING_AS_B).body == b"alpha"


def test_channels_of_two_servers_keep_their_data_apart(running: Running) -> None:
    a = running.service.open_channel(SERVER_A)
    b = running.service.open_channel(SERVER_B)
    assert request(a, "/latest/meta-data/hostname").body == b"alpha"
    assert request(b, "/latest/meta-data/hostname").body == b"bravo"
    assert request(b, "/latest/user-data").body == b"#!/bin/sh\necho bravo\n"


def test_binary_user_data_is_served_byte_for_byte(running: Running, source: FakeSource) -> None:
    source.views[SERVER_A] = replace(source.views[SERVER_A], user_data=BINARY_USER_DATA)
    path = running.service.open_channel(SERVER_A)
    for target in ("/latest/user-data", "/2009-04-04/user-data", "/openstack/latest/user_data"):
        reply = request(path, target)
        assert reply.status == 200 and reply.body == BINARY_USER_DATA
        assert reply.headers["content-length"] == str(len(BINARY_USER_DATA))


def test_missing_paths_and_user_data_are_404(running: Running, source: FakeSource) -> None:
    source.views[SERVER_A] = replace(source.views[SERVER_A], user_data=None)
    path = running.service.open_channel(SERVER_A)
    assert request(path, "/latest/user-data").status == 404
    assert request(path, "/latest/meta-data/nothing").status == 404
    assert request(path, "/").body.split(b"\n")[-1] == b"latest"


def test_curl_like_client_with_keep_alive(running: Running) -> None:
    path = running.service.open_channel(SERVER_A)
    with httpx.Client(transport=httpx.HTTPTransport(uds=str(path)),
                      base_url="http://169.254.169.254") as client:
        for _ in range(3):
            reply = client.get("/openstack/latest/network_data.json")
            assert reply.status_code == 200
            assert reply.json()["links"][0]["mtu"] == 1450
            assert reply.json()["services"] == [{"type": "dns", "address": "169.254.2.3"}]


def test_imdsv2_token_flow(running: Running) -> None:
    path = running.service.open_channel(SERVER_A)
    ttl = {"X-aws-ec2-metadata-token-ttl-seconds": "300"}
    reply = request(path, "/latest/api/token", "PUT", ttl)
    assert reply.status == 200 and reply.headers["x-aws-ec2-metadata-token-ttl-seconds"] == "300"
    token = reply.body.decode()
    ok = request(path, "/latest/meta-data/instance-id", headers={"X-aws-ec2-metadata-token": token})
    assert ok.status == 200
    bad = request(path, "/latest/meta-data/instance-id",
                  headers={"X-aws-ec2-metadata-token": token[:-3] + "AAA"})
    assert bad.status == 401
    assert request(path, "/latest/api/token", "PUT").status == 400
    assert request(path, "/latest/api/token", "PUT",
                   {"X-aws-ec2-metadata-token-ttl-seconds": "21601"}).status == 400
    proxied = request(path, "/latest/api/token", "PUT", {**ttl, "X-Forwarded-For": "1.2.3.4"})
    assert proxied.status == 403
    assert request(path, "/latest/api/token").status == 405
    assert request(path, "/latest/meta-data/hostname", "PUT", ttl).status == 405
    assert request(path, "/latest/meta-data/hostname", "DELETE").status == 405


def test_token_of_one_server_is_useless_on_another(running: Running) -> None:
    a = running.service.open_channel(SERVER_A)
    b = running.service.open_channel(SERVER_B)
    token_b = request(b, "/latest/api/token", "PUT",
                      {"X-aws-ec2-metadata-token-ttl-seconds": "60"}).body.decode()
    reply = request(a, "/latest/meta-data/hostname", headers={"X-aws-ec2-metadata-token": token_b})
    assert reply.status == 401


def test_required_tokens(running: Running, source: FakeSource) -> None:
    source.views[SERVER_A] = replace(source.views[SERVER_A], http_tokens="required")
    path = running.service.open_channel(SERVER_A)
    assert request(path, "/latest/meta-data/hostname").status == 401
    assert request(path, "/openstack/latest/meta_data.json").status == 401
    token = request(path, "/latest/api/token", "PUT",
                    {"X-aws-ec2-metadata-token-ttl-seconds": "60"}).body.decode()
    reply = request(path, "/latest/meta-data/hostname", headers={"X-aws-ec2-metadata-token": token})
    assert reply.status == 200 and reply.body == b"alpha"


def test_open_is_idempotent_and_close_removes_the_socket(running: Running) -> None:
    first = running.service.open_channel(SERVER_A)
    assert running.service.open_channel(SERVER_A) == first
    running.service.close_channel(SERVER_A)
    running.service.close_channel(SERVER_A)
    assert not first.exists()
    with pytest.raises(OSError):
        raw_exchange(first, b"GET / HTTP/1.0\r\n\r\n")
    again = running.service.open_channel(SERVER_A)
    assert request(again, "/latest/meta-data/hostname").body == b"alpha"


def test_channels_open_and_close_from_many_threads(running: Running) -> None:
    ids = [f"{i:08x}-0000-4000-8000-000000000000" for i in range(40)]

    def cycle(server_id: str) -> Path:
        running.service.open_channel(server_id)
        running.service.close_channel(server_id)
        return running.service.open_channel(server_id)

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        paths = list(pool.map(cycle, ids))
    assert all(p.exists() for p in paths)
    # An unknown server (its record is gone) gets 404, never someone else's data.
    assert request(paths[0], "/latest/meta-data/hostname").status == 404
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(running.service.close_channel, ids))
    assert not any(p.exists() for p in paths)


def test_server_ids_cannot_escape_the_socket_folder(running: Running) -> None:
    for bad in ("../evil", "a/b", "", "x" * 100):
        with pytest.raises(Exception, match="not a server id"):
            running.service.open_channel(bad)


def test_views_are_cached_for_a_few_seconds(running: Running, source: FakeSource) -> None:
    path = running.service.open_channel(SERVER_A)
    before = source.lookups
    for _ in range(10):
        assert request(path, "/latest/meta-data/hostname").status == 200
    assert source.lookups - before <= 2  # cache_seconds=0.2 in the fixture
    source.views[SERVER_A] = replace(source.views[SERVER_A], hostname="renamed")
    time.sleep(0.3)
    assert request(path, "/latest/meta-data/hostname").body == b"renamed"


def test_many_concurrent_clients_during_a_boot_storm(running: Running) -> None:
    paths = [running.service.open_channel(sid) for sid in (SERVER_A, SERVER_B)]

    def fetch(index: int) -> bytes:
        return request(paths[index % 2], "/openstack/latest/meta_data.json").body

    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        bodies = list(pool.map(fetch, range(400)))
    names = [json.loads(body)["name"] for body in bodies]
    assert names == ["alpha", "bravo"] * 200


def test_service_survives_garbage_and_keeps_serving(running: Running) -> None:
    path = running.service.open_channel(SERVER_A)
    for junk in (b"\x00" * 10000, b"GET " + b"/a" * 20000 + b" HTTP/1.1\r\n\r\n",
                 b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 500 + b"\r\n", b"\r\n\r\n\r\n"):
        with contextlib.suppress(OSError):
            raw_exchange(path, junk, timeout=15)
    # A client that connects and sends nothing does not block others.
    idle = [socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) for _ in range(5)]
    for sock in idle:
        sock.connect(str(path))
    try:
        assert request(path, "/latest/meta-data/hostname").body == b"alpha"
    finally:
        for sock in idle:
            sock.close()


def test_adopted_servers_get_channels_on_start(source: FakeSource, tmp_path: Path) -> None:
    async def scenario() -> tuple[bool, bytes, bool]:
        service = MetadataService(source, tmp_path / "run", adopt=lambda: [SERVER_B])
        await service.start()
        path = service.channel_path(SERVER_B)
        assert path is not None
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(None, request, path, "/latest/meta-data/hostname")
        await service.stop()
        return path.exists(), reply.body, service.channel_path(SERVER_B) is None

    assert asyncio.run(scenario()) == (False, b"bravo", True)


def test_channels_opened_before_start_are_served_after(
    source: FakeSource, tmp_path: Path
) -> None:
    service = MetadataService(source, tmp_path / "run")
    path = service.open_channel(SERVER_A)  # e.g. compute adopting before `kumo up` starts
    assert path.exists()

    async def scenario() -> bytes:
        await service.start()
        loop = asyncio.get_running_loop()
        reply = await loop.run_in_executor(None, request, path, "/latest/meta-data/hostname")
        await service.stop()
        return reply.body

    assert asyncio.run(scenario()) == b"alpha"


def test_socket_folder_is_private_and_short(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 80) / "run"
    folder = channel_dir(deep)
    assert len(str(folder / f"{SERVER_A}.sock")) <= 107
    assert channel_dir(Path("/var/lib/kumo/run")) == Path("/var/lib/kumo/run/metadata")
    service = MetadataService(FakeSource({SERVER_A: make_view(SERVER_A, "a")}), deep)
    path = service.open_channel(SERVER_A)
    try:
        assert oct(path.parent.stat().st_mode & 0o777) == "0o700"
    finally:
        service.close_channel(SERVER_A)
    assert not path.exists()


def test_a_failing_source_gives_503_and_the_service_recovers(
    running: Running, source: FakeSource
) -> None:
    path = running.service.open_channel(SERVER_A)
    healthy = source.lookup

    def broken(server_id: str) -> None:
        raise RuntimeError("database is locked")

    source.lookup = broken  # type: ignore[method-assign]
    assert request(path, "/latest/meta-data/hostname").status == 503
    source.lookup = healthy  # type: ignore[method-assign]
    assert request(path, "/latest/meta-data/hostname").body == b"alpha"
