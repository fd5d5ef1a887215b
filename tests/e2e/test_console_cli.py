"""`openstack console url show --novnc/--serial` against `kumo up` and a real guest.

One tiny guest (with a root shell on ttyS0 from user data): each URL opens its
console once through kumo's websocket relay; a second use, a foreign Origin and
another project's credentials are refused; `console log show` still works.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator

import httpx
import pytest
from websockets.exceptions import InvalidStatus

from tests.conftest import KumoProcess
from tests.e2e.consoles import SERIAL_SHELL, open_ws, private_copy, read_until, wait_for, ws_url_of
from tests.e2e.test_compute_cli import KUMO, OPENSTACK, as_json, run

pytestmark = [pytest.mark.e2e, pytest.mark.guest]


@pytest.fixture(scope="module")
def console_server(kumo_up: KumoProcess,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from kumo.imagebuild.tiny import cached_image

    work = tmp_path_factory.mktemp("console")
    tiny_image = private_copy(cached_image, work / "tiny.qcow2")
    run(kumo_up, "image", "create", "--file", str(tiny_image), "console-tiny", program=KUMO)
    user_data = work / "user-data"
    user_data.write_text(SERIAL_SHELL)
    try:
        server = as_json(kumo_up, "server", "create", "--image", "console-tiny", "--flavor",
                         "m1.tiny", "--user-data", str(user_data), "--wait", "console-vm")
        assert server["status"] == "ACTIVE"
        wait_for("the serial shell", lambda: "serial shell started" in run(
            kumo_up, "console", "log", "show", "console-vm").stdout or None, timeout=300,
            every=3)
        yield str(server["id"])
    finally:
        run(kumo_up, "server", "delete", "--wait", "console-vm", check=False)
        run(kumo_up, "image", "delete", "console-tiny", check=False)


def url_of(kumo: KumoProcess, kind: str) -> str:
    shown = json.loads(run(kumo, "console", "url", "show", f"--{kind}", "console-vm",
                           "-f", "json").stdout)
    assert shown["type"] == kind
    return str(shown["url"])


def refused(url: str, origin: str | None = None) -> int:
    with pytest.raises(InvalidStatus) as caught:
        open_ws(url, origin)
    return int(caught.value.response.status_code)


def test_novnc_url_opens_the_screen_once(kumo_up: KumoProcess, console_server: str) -> None:
    url = url_of(kumo_up, "novnc")
    assert url.startswith(f"{kumo_up.url}/console/novnc/{console_server}?token=")
    page = httpx.get(url, timeout=30)
    assert page.status_code == 200 and "kumo-console-page.js" in page.text
    ws_url = ws_url_of(url)
    assert refused(ws_url, origin="http://evil.example") == 403  # and not spent by that
    with open_ws(ws_url, origin=kumo_up.url) as ws:
        assert read_until(ws, b"\n").startswith(b"RFB 003.008")
    assert refused(ws_url, origin=kumo_up.url) == 403  # used once already


def test_serial_url_replays_the_log_and_takes_keys_once(kumo_up: KumoProcess,
                                                        console_server: str) -> None:
    url = url_of(kumo_up, "serial")
    assert url.startswith(f"ws://{kumo_up.url.split('://', 1)[1]}/console/serial/")
    with open_ws(url) as ws:
        past = read_until(ws, b"serial shell started")
        assert b"tiny:" in past  # the boot log so far comes first
        ws.send(b"echo kumo-$((6*7))\r")
        assert b"kumo-42" in read_until(ws, b"kumo-42", timeout=60)
    assert refused(url) == 403
    log = run(kumo_up, "console", "log", "show", "console-vm").stdout
    assert "kumo-42" in log  # what the guest answered is in the log too


def test_another_projects_credentials_get_no_console(kumo_up: KumoProcess,
                                                     console_server: str) -> None:
    suffix = uuid.uuid4().hex[:8]
    project, user = f"console-p-{suffix}", f"console-u-{suffix}"
    run(kumo_up, "project", "create", project)
    run(kumo_up, "user", "create", "--project", project, "--password", "pw-" + suffix, user)
    run(kumo_up, "role", "add", "--project", project, "--user", user, "member")
    env = kumo_up.env()
    for key in ("OS_CLOUD", "OS_CLIENT_CONFIG_FILE"):
        env.pop(key, None)
    env.update({"OS_AUTH_URL": f"{kumo_up.url}/identity/v3", "OS_USERNAME": user,
                "OS_PASSWORD": "pw-" + suffix, "OS_PROJECT_NAME": project,
                "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default",
                "OS_IDENTITY_API_VERSION": "3"})
    for kind in ("novnc", "serial"):
        result = subprocess.run([OPENSTACK, "console", "url", "show", f"--{kind}",
                                 console_server], env=env, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode != 0
        assert f"No Server found for {console_server}" in result.stderr, result.stderr
    # The console call itself, with that project's token: Nova's 404, no URL.
    token = subprocess.run([OPENSTACK, "token", "issue", "-f", "value", "-c", "id"], env=env,
                           capture_output=True, text=True, timeout=120, check=True).stdout
    answer = httpx.post(f"{kumo_up.url}/compute/v2.1/servers/{console_server}/remote-consoles",
                        json={"remote_console": {"protocol": "vnc", "type": "novnc"}},
                        headers={"X-Auth-Token": token.strip(),
                                 "OpenStack-API-Version": "compute 2.96"}, timeout=60)
    assert answer.status_code == 404 and "itemNotFound" in answer.json()
    run(kumo_up, "user", "delete", user, check=False)
    run(kumo_up, "project", "delete", project, check=False)
