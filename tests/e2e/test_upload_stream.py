"""Image uploads over a raw socket against a real `kumo up` (uvicorn reads the body directly).

A sized body is read straight from the socket into the upload's blocks, past the
HTTP parser; these tests pin what a client sees on that path: the bytes and both
hashes, a refusal only after the whole body was sent, a client that goes away
mid-body, `Expect: 100-continue`, and a connection that ends after the response.
"""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from tests.conftest import KumoProcess, password_token

pytestmark = pytest.mark.e2e
MIB = 1024 * 1024


def _token(kumo: KumoProcess) -> str:
    with httpx.Client(base_url=kumo.url) as client:
        return password_token(client, "admin", kumo.password, "admin")


def _create(kumo: KumoProcess, token: str, disk_format: str = "raw") -> str:
    body = {"name": f"stream-{uuid.uuid4().hex[:8]}", "disk_format": disk_format,
            "container_format": "bare"}
    response = httpx.post(f"{kumo.url}/image/v2/images", json=body,
                          headers={"X-Auth-Token": token})
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _show(kumo: KumoProcess, token: str, image_id: str) -> dict[str, Any]:
    response = httpx.get(f"{kumo.url}/image/v2/images/{image_id}",
                         headers={"X-Auth-Token": token})
    assert response.status_code == 200
    return dict(response.json())


def _connect(kumo: KumoProcess, token: str, image_id: str, length: int,
             extra: str = "") -> socket.socket:
    parts = urlsplit(kumo.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
    sock.sendall(
        (f"PUT /image/v2/images/{image_id}/file HTTP/1.1\r\nHost: {parts.netloc}\r\n"
         f"X-Auth-Token: {token}\r\nContent-Type: application/octet-stream\r\n"
         + (f"Content-Length: {length}\r\n" if length >= 0 else "")
         + f"{extra}\r\n").encode()
    )
    return sock


def _response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip()
               for k, v in (line.split(":", 1) for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def _partials(kumo: KumoProcess) -> list[str]:
    return [p.name for p in (kumo.data_dir / "images").glob("*.partial")]


def test_sized_body_in_odd_pieces_is_stored_whole(kumo_up: KumoProcess) -> None:
    token = _token(kumo_up)
    image_id = _create(kumo_up, token)
    data = os.urandom(19 * MIB + 4321)  # several blocks and an unaligned tail
    sock = _connect(kumo_up, token, image_id, len(data))
    with sock:
        sock.sendall(data[:1000])  # early bytes that the HTTP parser sees
        time.sleep(0.2)
        offset = 1000
        for size in (1, 4095, 3 * MIB + 17, 8 * MIB, 5 * MIB):
            sock.sendall(data[offset : offset + size])
            offset += size
        sock.sendall(data[offset:])
        status, headers, _ = _response(sock)
    assert status == 204
    assert headers.get("connection") == "close"  # the parser never saw the body
    image = _show(kumo_up, token, image_id)
    assert image["status"] == "active" and image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    got = httpx.get(f"{kumo_up.url}/image/v2/images/{image_id}/file",
                    headers={"X-Auth-Token": token})
    assert got.content == data


def test_refusal_comes_after_the_whole_body(kumo_up: KumoProcess) -> None:
    token = _token(kumo_up)
    image_id = _create(kumo_up, token, disk_format="qcow2")
    data = os.urandom(40 * MIB)  # refused on the first block; the rest must be read
    sock = _connect(kumo_up, token, image_id, len(data))
    with sock:
        sock.sendall(data)  # a broken pipe here would fail the test
        status, _, body = _response(sock)
    assert status == 400
    assert b"qcow2" in body
    assert _show(kumo_up, token, image_id)["status"] == "queued"
    assert image_id not in _partials(kumo_up)


@pytest.mark.parametrize("chunked", [False, True], ids=["sized", "chunked"])
def test_client_gone_mid_body_leaves_nothing(kumo_up: KumoProcess, chunked: bool) -> None:
    token = _token(kumo_up)
    image_id = _create(kumo_up, token)
    logged = kumo_up.log.stat().st_size
    if chunked:  # the ASGI message path: uvicorn tells of the disconnect
        sock = _connect(kumo_up, token, image_id, -1, "Transfer-Encoding: chunked\r\n")
        sock.sendall(f"{20 * MIB:x}\r\n".encode() + os.urandom(20 * MIB) + b"\r\n")
    else:
        sock = _connect(kumo_up, token, image_id, 64 * MIB)
        sock.sendall(os.urandom(20 * MIB))
    sock.close()
    deadline = time.monotonic() + 30
    while _show(kumo_up, token, image_id)["status"] != "queued":
        assert time.monotonic() < deadline, "image stayed in saving"
        time.sleep(0.1)
    assert not (kumo_up.data_dir / "images" / image_id).exists()
    assert f"{image_id}.partial" not in _partials(kumo_up)
    assert httpx.get(f"{kumo_up.url}/healthcheck").status_code == 200
    time.sleep(0.5)  # anything logged after the image went back to queued
    with kumo_up.log.open("rb") as log:
        log.seek(logged)
        lines = log.read().decode(errors="replace").splitlines()
    assert [line for line in lines if image_id in line and " INFO " in line], lines
    assert not [line for line in lines if "Traceback" in line or " ERROR " in line], lines


def test_expect_100_continue(kumo_up: KumoProcess) -> None:
    token = _token(kumo_up)
    image_id = _create(kumo_up, token)
    data = os.urandom(3 * MIB)
    sock = _connect(kumo_up, token, image_id, len(data), "Expect: 100-continue\r\n")
    with sock:
        interim = sock.recv(64)
        assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
        sock.sendall(data)
        status, _, _ = _response(sock)
    assert status == 204
    assert _show(kumo_up, token, image_id)["os_hash_value"] == hashlib.sha512(data).hexdigest()
