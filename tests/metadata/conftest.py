"""A fake InstanceSource and a metadata service running on its own event loop thread."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kumo.config import MetadataSettings
from kumo.metadata.http import Limits
from kumo.metadata.instance import InstanceView, PublicKey
from kumo.metadata.service import MetadataService

# Binary user data: gzip magic, NULs, CR/LF and bytes that are not UTF-8.
BINARY_USER_DATA = b"\x1f\x8b\x08\x00\x00\r\n\x00\xff\xfe" + bytes(range(256)) * 4


def make_view(uuid: str, name: str, **changes: object) -> InstanceView:
    view = InstanceView(
        uuid=uuid,
        name=name,
        hostname=name,
        project_id="proj-" + name,
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        instance_type="m1.tiny",
        image_id="6e6b8e07-0000-4000-8000-000000000001",
        keys=(PublicKey(f"key-{name}", "ssh", f"ssh-ed25519 AAAAC3Nza{name} {name}@test"),),
        user_data=b"#!/bin/sh\necho " + name.encode() + b"\n",
        meta={"role": name},
    )
    return replace(view, **changes)  # type: ignore[arg-type]


SERVER_A = "aaaaaaaa-0000-4000-8000-00000000000a"
SERVER_B = "bbbbbbbb-0000-4000-8000-00000000000b"


@dataclass
class FakeSource:
    views: dict[str, InstanceView] = field(default_factory=dict)
    lookups: int = 0

    def lookup(self, server_id: str) -> InstanceView | None:
        self.lookups += 1
        return self.views.get(server_id)


@pytest.fixture
def source() -> FakeSource:
    return FakeSource(
        {SERVER_A: make_view(SERVER_A, "alpha"), SERVER_B: make_view(SERVER_B, "bravo")}
    )


@dataclass
class Running:
    service: MetadataService
    loop: asyncio.AbstractEventLoop

    def call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)  # type: ignore[arg-type]


@pytest.fixture
def running(source: FakeSource, tmp_path: Path) -> Iterator[Running]:
    """The service on an event loop in a thread, like inside `kumo up`."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    service = MetadataService(
        source, tmp_path / "run", MetadataSettings(), cache_seconds=0.2,
        limits=Limits(head_timeout=1.0, idle_timeout=1.0),
    )
    running = Running(service, loop)
    running.call(service.start())
    yield running
    running.call(service.stop())
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes


def raw_exchange(path: Path, data: bytes, timeout: float = 5.0) -> bytes:
    """Send raw bytes on a channel, read until the server closes."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(path))
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def parse_reply(raw: bytes) -> Reply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Reply(status, headers, body)


def request(
    path: Path, target: str, method: str = "GET", headers: dict[str, str] | None = None
) -> Reply:
    """One HTTP/1.0-style request (connection closes), like busybox wget through socat."""
    lines = [f"{method} {target} HTTP/1.1", "Host: 169.254.169.254", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    return parse_reply(raw_exchange(path, ("\r\n".join(lines) + "\r\n\r\n").encode()))
