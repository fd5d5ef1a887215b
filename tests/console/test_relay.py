"""Nova's console API and the websocket relay, over HTTP with fake guest sockets."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from kumo.compute.models import Server
from kumo.compute.service import ComputeService
from kumo.db.engine import session_scope
from tests.compute.fakes import FakeHypervisor
from tests.compute.test_routes import boot, mv

V = "/compute/v2.1"


class FakeGuestSocket:
    """A unix socket server standing in for QEMU: greets, then answers each line."""

    def __init__(self, path: Path, greeting: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(4)
        self.greeting = greeting
        self.connections = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        with conn:
            conn.sendall(self.greeting)
            while data := conn.recv(4096):
                conn.sendall(b"echo:" + data.upper())

    def close(self) -> None:
        self.server.close()


@pytest.fixture
def server_id(api: TestClient, admin_headers: dict[str, str], compute: ComputeService,
              hypervisor: FakeHypervisor) -> Iterator[str]:
    made = boot(api, admin_headers, compute)["id"]
    vnc = FakeGuestSocket(hypervisor.console_socket(made, "vnc"), b"RFB 003.008\n")
    serial_path = hypervisor.console_socket(made, "serial")
    serial = FakeGuestSocket(serial_path, b"")
    serial_path.with_name("console.log").write_bytes(b"boot line 1\nkumo login: ")
    yield made
    vnc.close()
    serial.close()


def console_url(api: TestClient, headers: dict[str, str], server_id: str, kind: str,
                version: str = "2.96") -> str:
    protocol = {"novnc": "vnc", "serial": "serial"}[kind]
    response = api.post(f"{V}/servers/{server_id}/remote-consoles",
                        json={"remote_console": {"protocol": protocol, "type": kind}},
                        headers=mv(headers, version))
    assert response.status_code == 200, response.text
    shown = response.json()["remote_console"]
    assert (shown["protocol"], shown["type"]) == (protocol, kind)
    return str(shown["url"])


def ws_path(url: str) -> str:
    """The relay path of a console URL (TestClient speaks to its own app)."""
    path = url.split("testserver", 1)[1]
    if "/console/novnc/" in path:
        page, query = path.split("?", 1)
        return f"{page}/websockify?{query}"
    return path


def assert_refused(api: TestClient, path: str, **headers: str) -> None:
    """The relay closes the handshake unaccepted (policy violation)."""
    with pytest.raises(WebSocketDisconnect) as refused, api.websocket_connect(
            path, headers=headers):
        pass
    assert refused.value.code == 1008


def test_remote_console_urls(api: TestClient, admin_headers: dict[str, str],
                             server_id: str) -> None:
    novnc = console_url(api, admin_headers, server_id, "novnc")
    assert novnc.startswith(f"http://testserver/console/novnc/{server_id}?token=")
    serial = console_url(api, admin_headers, server_id, "serial")
    assert serial.startswith(f"ws://testserver/console/serial/{server_id}?token=")
    page = api.get(novnc.split("testserver", 1)[1])
    assert page.status_code == 200 and "kumo-console-page.js" in page.text
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["cache-control"] == "no-store"


def test_legacy_actions_before_2_6(api: TestClient, admin_headers: dict[str, str],
                                   server_id: str) -> None:
    for action, kind in (("os-getVNCConsole", "novnc"), ("os-getSerialConsole", "serial")):
        response = api.post(f"{V}/servers/{server_id}/action", json={action: {"type": kind}},
                            headers=mv(admin_headers, "2.1"))
        assert response.status_code == 200, response.text
        assert response.json()["console"]["type"] == kind
        assert "token=" in response.json()["console"]["url"]
    gone = api.post(f"{V}/servers/{server_id}/action",
                    json={"os-getVNCConsole": {"type": "novnc"}},
                    headers=mv(admin_headers, "2.6"))
    assert gone.status_code == 404
    old = api.post(f"{V}/servers/{server_id}/remote-consoles",
                   json={"remote_console": {"protocol": "vnc", "type": "novnc"}},
                   headers=mv(admin_headers, "2.5"))
    assert old.status_code == 404


@pytest.mark.parametrize(("body", "message"), [
    ({"remote_console": {"protocol": "vnc", "type": "serial"}}, "must be one of novnc"),
    ({"remote_console": {"protocol": "spice", "type": "spice-html5"}}, "Unavailable console"),
    ({"remote_console": {"protocol": "telnet", "type": "novnc"}}, "protocol"),
    ({"console": {}}, "required"),
])
def test_bad_console_requests(api: TestClient, admin_headers: dict[str, str], server_id: str,
                              body: dict[str, object], message: str) -> None:
    response = api.post(f"{V}/servers/{server_id}/remote-consoles", json=body,
                        headers=mv(admin_headers, "2.96"))
    assert response.status_code == 400
    assert message in response.json()["badRequest"]["message"]


def test_console_of_a_stopped_or_foreign_server(api: TestClient, admin_headers: dict[str, str],
                                                compute: ComputeService, server_id: str,
                                                make_project_user: object) -> None:
    other = make_project_user("p2", "bob")  # type: ignore[operator]
    body = {"remote_console": {"protocol": "vnc", "type": "novnc"}}
    foreign = api.post(f"{V}/servers/{server_id}/remote-consoles", json=body,
                       headers=mv(other, "2.96"))
    assert foreign.status_code == 404
    api.post(f"{V}/servers/{server_id}/action", json={"os-stop": None}, headers=admin_headers)
    compute.wait_idle()
    stopped = api.post(f"{V}/servers/{server_id}/remote-consoles", json=body,
                       headers=mv(admin_headers, "2.96"))
    assert stopped.status_code == 409 and "not ready" in stopped.text


def test_vnc_relay_works_once(api: TestClient, admin_headers: dict[str, str],
                              server_id: str) -> None:
    path = ws_path(console_url(api, admin_headers, server_id, "novnc"))
    with api.websocket_connect(path, headers={"origin": "http://testserver"}) as ws:
        assert ws.receive_bytes() == b"RFB 003.008\n"
        ws.send_bytes(b"RFB 003.008\n")
        assert ws.receive_bytes() == b"echo:RFB 003.008\n"
    assert_refused(api, path)


def test_relay_refuses_foreign_origin_without_spending(api: TestClient,
                                                       admin_headers: dict[str, str],
                                                       server_id: str) -> None:
    path = ws_path(console_url(api, admin_headers, server_id, "novnc"))
    assert_refused(api, path, origin="http://evil.example")
    with api.websocket_connect(path, headers={"origin": "http://testserver"}) as ws:
        assert ws.receive_bytes().startswith(b"RFB")


def test_relay_refuses_a_token_of_another_server(api: TestClient,
                                                 admin_headers: dict[str, str],
                                                 compute: ComputeService,
                                                 hypervisor: FakeHypervisor,
                                                 server_id: str,
                                                 make_project_user: object) -> None:
    bob = make_project_user("p2", "bob")  # type: ignore[operator]
    theirs = boot(api, bob, compute, name="bobs")["id"]
    FakeGuestSocket(hypervisor.console_socket(theirs, "vnc"), b"RFB 003.008\n")
    token = console_url(api, bob, theirs, "novnc").split("token=", 1)[1]
    assert_refused(api, f"/console/novnc/{server_id}/websockify?token={token}")
    # ... and it is spent: it no longer opens its own server's console either
    assert_refused(api, f"/console/novnc/{theirs}/websockify?token={token}")


def test_serial_relay_replays_the_log_then_goes_live(api: TestClient,
                                                     admin_headers: dict[str, str],
                                                     server_id: str) -> None:
    first = ws_path(console_url(api, admin_headers, server_id, "serial"))
    second = ws_path(console_url(api, admin_headers, server_id, "serial"))
    with api.websocket_connect(first) as one, api.websocket_connect(second) as two:
        assert one.receive_bytes() == b"boot line 1\nkumo login: "
        assert two.receive_bytes() == b"boot line 1\nkumo login: "
        one.send_bytes(b"root\n")
        assert one.receive_bytes() == b"echo:ROOT\n"
        assert two.receive_bytes() == b"echo:ROOT\n"  # one guest port, every viewer sees it
    assert_refused(api, first)


def test_console_of_a_server_on_another_host_is_refused_and_says_where(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService,
        server_id: str) -> None:
    with session_scope(compute.runtime.sessions) as session:
        server = session.get(Server, server_id)
        assert server is not None
        server.host = "other-host"
    body = {"remote_console": {"protocol": "vnc", "type": "novnc"}}
    answer = api.post(f"{V}/servers/{server_id}/remote-consoles", json=body,
                      headers=mv(admin_headers, "2.96"))
    assert answer.status_code == 409, answer.text
    message = answer.json()["conflictingRequest"]["message"]
    assert "runs on host other-host" in message and compute.host in message
