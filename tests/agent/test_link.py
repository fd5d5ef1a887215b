"""The agent link: signed requests from API processes to one host's agent."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from kumo.agent.link import HEADER, Replays, agent_app, link_key, sign, verify
from kumo.errors import NotFound
from kumo.runtime import Runtime

KEY = b"k" * 32


def test_signatures_bind_method_target_and_time() -> None:
    header = sign(KEY, "GET", "/v1/servers/a/console?length=5", now=1000)
    assert verify(KEY, header, "GET", "/v1/servers/a/console?length=5", now=1030)
    assert not verify(KEY, header, "GET", "/v1/servers/b/console?length=5", now=1030)
    assert not verify(KEY, header, "POST", "/v1/servers/a/console?length=5", now=1030)
    assert not verify(KEY, header, "GET", "/v1/servers/a/console?length=5", now=1061)
    assert not verify(b"x" * 32, header, "GET", "/v1/servers/a/console?length=5", now=1030)
    for bad in (None, "", "nonsense", "abc:def", "1000:n:é", header + ":x"):
        assert not verify(KEY, bad, "GET", "/", now=1000)


def test_a_signature_is_good_once() -> None:
    """A request captured on the underlay cannot be sent again while its stamp is good;
    a fresh signature of the same request can."""
    replays = Replays()
    target = "/v1/servers/a/disk"
    header = sign(KEY, "GET", target, now=1000)
    assert verify(KEY, header, "GET", target, now=1001, replays=replays)
    assert not verify(KEY, header, "GET", target, now=1002, replays=replays)
    assert not verify(KEY, header, "GET", target, now=1059, replays=replays)
    assert verify(KEY, sign(KEY, "GET", target, now=1000), "GET", target, now=1002,
                  replays=replays)
    later = sign(KEY, "GET", target, now=1200)  # older entries are dropped as time goes on
    assert verify(KEY, later, "GET", target, now=1200, replays=replays)
    assert len(replays._seen) == 1


def test_the_agent_app_serves_console_disk_and_record_to_signed_callers_only(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    disk = tmp_path / "disk"
    disk.write_bytes(b"q" * 3_000_000)

    def console(server_id: str, length: int | None) -> str:
        if server_id != "s1":
            raise NotFound("no such server here")
        return f"log of {server_id}, last {length}"

    app = agent_app(KEY, console, lambda _sid: disk, lambda sid: {"image_id": "i-" + sid})
    with TestClient(app) as client:
        def get(target: str, key: bytes = KEY) -> object:
            return client.get(target, headers={HEADER: sign(key, "GET", target)})

        answer = get("/v1/servers/s1/console?length=5")
        assert answer.status_code == 200 and answer.text == "log of s1, last 5"  # type: ignore[attr-defined]
        once = {HEADER: sign(KEY, "GET", "/v1/servers/s1/record")}
        assert client.get("/v1/servers/s1/record", headers=once).status_code == 200
        with caplog.at_level(logging.WARNING, logger="kumo.agent"):
            assert client.get("/v1/servers/s1/record", headers=once).status_code == 403
        assert caplog.messages == ["agent link: refused GET /v1/servers/s1/record from "
                                   "testclient: bad, stale, reused or missing signature"]
        assert get("/v1/servers/s2/console").status_code == 404  # type: ignore[attr-defined]
        assert get("/v1/servers/s1/console", key=b"z" * 32).status_code == 403  # type: ignore[attr-defined]
        assert client.get("/v1/servers/s1/disk").status_code == 403
        got = get("/v1/servers/s1/disk")
        assert got.content == disk.read_bytes()  # type: ignore[attr-defined]
        assert get("/v1/servers/s1/record").json() == {"image_id": "i-s1"}  # type: ignore[attr-defined]


def test_kumo_up_on_postgresql_answers_its_link_under_agent(runtime: Runtime) -> None:
    """Mounted beside the APIs (before the dashboard's "/"), signed without the prefix."""
    if runtime.engine.dialect.name != "postgresql":
        pytest.skip("kumo up runs an agent of its own on PostgreSQL only")
    from kumo.agent.wiring import mount_agent_link
    from kumo.api.app import create_app

    app = create_app(runtime)
    mount_agent_link(runtime, app)
    target = "/v1/servers/s1/record"
    with TestClient(app, base_url="http://testserver") as client:
        answer = client.get("/agent" + target, headers={HEADER: sign(link_key(runtime), "GET",
                                                                     target)})
        assert answer.status_code == 404 and "no disk of server s1" in answer.text
        assert client.get("/agent" + target).status_code == 403


def test_console_websockets_open_to_signed_callers_only() -> None:
    """The handshake is checked before it is accepted: a bad, stale or missing
    signature, or one for another server, is refused; a good one is relayed."""
    opened: list[tuple[str, str]] = []

    async def consoles(websocket: WebSocket, server_id: str, kind: str) -> None:
        opened.append((server_id, kind))
        await websocket.send_bytes(f"{kind} of {server_id}".encode())
        assert await websocket.receive_bytes() == b"typed"
        await websocket.close()

    def nothing(*_args: object) -> Any:
        raise NotFound("unused")

    app = agent_app(KEY, nothing, nothing, nothing, consoles)
    target = "/v1/servers/s1/consoles/serial"
    with TestClient(app) as client:
        with client.websocket_connect(target, headers={HEADER: sign(KEY, "GET", target)}) as ws:
            assert ws.receive_bytes() == b"serial of s1"
            ws.send_bytes(b"typed")
        for headers in ({HEADER: sign(b"z" * 32, "GET", target)},  # another key
                        {HEADER: sign(KEY, "GET", target, now=time.time() - 61)},  # stale
                        {HEADER: sign(KEY, "GET", "/v1/servers/s2/consoles/serial")},
                        {HEADER: sign(KEY, "POST", target)},
                        {}):
            with pytest.raises(WebSocketDisconnect) as refused, \
                    client.websocket_connect(target, headers=headers):
                pass
            assert refused.value.code == 1008
        other = "/v1/servers/s1/consoles/spice"
        with pytest.raises(WebSocketDisconnect), client.websocket_connect(
                other, headers={HEADER: sign(KEY, "GET", other)}):
            pass
    assert opened == [("s1", "serial")]
