"""Consoles of servers on other hosts: an API process (PostgreSQL, role `api`) relays
the viewer's websocket to the host's agent link, served here by uvicorn on loopback
with the real signature check, in front of fake guest sockets."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from kumo.agent import registry
from kumo.agent.link import agent_app, link_key
from kumo.compute.models import ACTIVE, RUNNING, SHUTDOWN, Server
from kumo.console.relay import SerialRelay, relay_local
from kumo.db.engine import session_scope
from kumo.errors import NotFound
from kumo.runtime import Runtime
from tests.agent.conftest import admin, boot, client, scaled
from tests.console.test_relay import FakeGuestSocket, ws_path

__all__ = ["admin", "boot", "client", "scaled"]

V = "/compute/v2.1"


class HostSockets:
    """The agent host's hypervisor, as far as consoles go: sockets in one folder."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def console_socket(self, server_id: str, kind: str) -> Path:
        return self.folder / server_id / f"{kind}.sock"


@pytest.fixture
def agent(scaled: Runtime, tmp_path_factory: pytest.TempPathFactory) -> Iterator[HostSockets]:
    """Host h1's agent link on a loopback port, registered and up."""
    # AF_UNIX paths are short: not under pytest's long tmp_path.
    sockets = HostSockets(Path(tmp_path_factory.mktemp("c", numbered=True)))
    serial = SerialRelay()

    async def consoles(websocket: WebSocket, server_id: str, kind: str) -> None:
        await relay_local(websocket, sockets, serial, server_id, kind)  # type: ignore[arg-type]

    def unused(*_args: object) -> Any:
        raise NotFound("unused")

    app = agent_app(link_key(scaled), unused, unused, unused, consoles)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[listener])))
    thread.start()
    try:
        while not server.started:
            threading.Event().wait(0.01)
        facts = registry.HostFacts(vcpus=4, memory_mb=4096, local_gb=40)
        with session_scope(scaled.sessions) as session:
            registry.register(session, "h1", facts, registry.Placement(), host_ip="127.0.0.1",
                              agent_url=f"http://127.0.0.1:{listener.getsockname()[1]}")
        yield sockets
    finally:
        server.should_exit = True
        thread.join(10)
        listener.close()


@pytest.fixture
def running(scaled: Runtime, agent: HostSockets,
            boot: Callable[..., dict[str, Any]]) -> Iterator[str]:
    """A server the scheduler put on h1, running there, with its console sockets."""
    server_id = str(boot("vm1")["id"])
    with session_scope(scaled.sessions) as session:
        server = session.get(Server, server_id)
        assert server is not None and server.host == "h1"
        server.vm_state, server.power_state = ACTIVE, RUNNING
    vnc = FakeGuestSocket(agent.console_socket(server_id, "vnc"), b"RFB 003.008\n")
    serial = FakeGuestSocket(agent.console_socket(server_id, "serial"), b"")
    (agent.folder / server_id / "console.log").write_bytes(b"boot finished\nlogin: ")
    yield server_id
    vnc.close()
    serial.close()


def remote_console(client: TestClient, admin: dict[str, str], server_id: str,
                   kind: str) -> Any:
    protocol = {"novnc": "vnc", "serial": "serial"}[kind]
    return client.post(f"{V}/servers/{server_id}/remote-consoles",
                       json={"remote_console": {"protocol": protocol, "type": kind}},
                       headers=admin)


def console_path(client: TestClient, admin: dict[str, str], server_id: str, kind: str) -> str:
    answer = remote_console(client, admin, server_id, kind)
    assert answer.status_code == 200, answer.text
    return ws_path(answer.json()["remote_console"]["url"])


def test_vnc_of_a_server_on_an_agent_host(client: TestClient, admin: dict[str, str],
                                          running: str) -> None:
    path = console_path(client, admin, running, "novnc")
    with client.websocket_connect(path, headers={"origin": "http://testserver"}) as ws:
        assert ws.receive_bytes() == b"RFB 003.008\n"
        ws.send_bytes(b"RFB 003.008\n")
        assert ws.receive_bytes() == b"echo:RFB 003.008\n"
    with pytest.raises(WebSocketDisconnect) as spent, client.websocket_connect(path):
        pass
    assert spent.value.code == 1008  # the API process still spends the token once


def test_serial_of_a_server_on_an_agent_host_is_one_port_for_every_viewer(
        client: TestClient, admin: dict[str, str], running: str, agent: HostSockets) -> None:
    first = console_path(client, admin, running, "serial")
    second = console_path(client, admin, running, "serial")
    with client.websocket_connect(first) as one, client.websocket_connect(second) as two:
        assert one.receive_bytes() == b"boot finished\nlogin: "
        assert two.receive_bytes() == b"boot finished\nlogin: "
        one.send_text("root\n")
        assert one.receive_bytes() == b"echo:ROOT\n"
        assert two.receive_bytes() == b"echo:ROOT\n"


def test_a_guest_socket_the_agent_cannot_reach_closes_the_viewer_with_its_reason(
        client: TestClient, admin: dict[str, str], running: str, agent: HostSockets) -> None:
    path = console_path(client, admin, running, "novnc")
    agent.console_socket(running, "vnc").unlink()
    with client.websocket_connect(path) as ws, pytest.raises(WebSocketDisconnect) as closed:
        ws.receive_bytes()
    assert closed.value.code == 1011 and "not reachable" in str(closed.value.reason)


def test_consoles_of_a_host_that_is_down_or_gone(client: TestClient, admin: dict[str, str],
                                                 scaled: Runtime, running: str) -> None:
    with session_scope(scaled.sessions) as session:
        node = registry.find(session, "h1")
        assert node is not None
        node.last_seen_at = datetime.now(UTC) - timedelta(seconds=600)
    down = remote_console(client, admin, running, "serial")
    assert down.status_code == 409, down.text
    assert "host h1, which is down" in down.json()["conflictingRequest"]["message"]
    with session_scope(scaled.sessions) as session:
        server = session.get(Server, running)
        assert server is not None
        server.host = "gone"
    gone = remote_console(client, admin, running, "novnc")
    assert gone.status_code == 409 and "no agent link" in gone.text


def test_no_console_for_a_server_that_is_not_running(client: TestClient, admin: dict[str, str],
                                                     scaled: Runtime, running: str) -> None:
    with session_scope(scaled.sessions) as session:
        server = session.get(Server, running)
        assert server is not None
        server.power_state = SHUTDOWN
    answer = remote_console(client, admin, running, "novnc")
    assert answer.status_code == 409 and "is not ready" in answer.text
