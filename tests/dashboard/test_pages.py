"""The dashboard's pages drive the real APIs: images, key pairs, groups, servers."""

from __future__ import annotations

import re
from pathlib import Path

from starlette.testclient import TestClient

from kumo.compute.service import ComputeService
from kumo.diskformat import qemuimg
from tests.compute.conftest import IMAGE_ID
from tests.compute.fakes import FakeHypervisor
from tests.dashboard.conftest import csrf_of


def test_overview_and_every_page_render(dash: TestClient) -> None:
    for path in ("/", "/images", "/servers", "/servers/new", "/keypairs", "/security-groups",
                 "/networks"):
        page = dash.get(path)
        assert page.status_code == 200, (path, page.text)
        assert page.headers["x-frame-options"] == "DENY"
        assert "csrf_token" in page.text or path == "/networks"
    listed = dash.get("/networks").text
    for table in ("networks", "subnets", "routers", "floating IPs", "volumes"):  # APIs have them
        assert f"kumo's API has no {table} yet" not in listed, table
    assert "<th>External gateway</th>" in listed


def test_networks_page_lists_volumes(dash: TestClient, admin_headers: dict[str, str]) -> None:
    from kumo.volume.service import volume_service_of
    from tests.volume.conftest import LATEST, wait_status

    made = dash.post("/volume/v3/volumes", json={"volume": {"size": 1, "name": "scratch"}},
                     headers={**admin_headers, **LATEST})
    assert made.status_code == 202, made.text
    runtime = dash.app.state.runtime  # type: ignore[attr-defined]
    wait_status(dash, {**admin_headers, **LATEST}, "volume", made.json()["volume"]["id"],
                volume_service_of(runtime))
    listed = dash.get("/networks").text
    assert "<td>scratch</td><td>1 GB</td><td>available</td>" in listed


def test_upload_streams_to_glance_and_shows_lint(dash: TestClient, tmp_path: Path) -> None:
    token = csrf_of(dash.get("/images").text)
    disk = tmp_path / "blank.qcow2"
    qemuimg.create(disk, "qcow2", 64 * 1024 * 1024)
    made = dash.post("/images", data={"name": "blank", "disk_format": "qcow2",
                                      "container_format": "bare", "visibility": "private",
                                      "csrf_token": token})
    assert made.status_code == 201, made.text
    image_id = made.json()["id"]
    data = disk.read_bytes()
    uploaded = dash.put(f"/images/{image_id}/file", content=data,
                        headers={"X-CSRF-Token": token, "Content-Type": "application/octet-stream"})
    assert uploaded.status_code == 200, uploaded.text
    findings = uploaded.json()["findings"]
    assert findings and findings[0]["severity"] == "error"  # a blank disk has no root fs
    page = dash.get(f"/images/{image_id}").text
    assert "active" in page and findings[0]["message"][:30] in page.replace("&#39;", "'")
    assert dash.get("/image/v2/images/" + image_id).status_code == 401  # the API wants a token
    private = dash.post(f"/images/{image_id}/visibility",
                        data={"visibility": "shared", "csrf_token": token})
    assert "Visibility is now shared" in private.text
    gone = dash.post(f"/images/{image_id}/delete", data={"csrf_token": token})
    assert "Image deleted" in gone.text and "blank" not in gone.text.split("<main>")[1]


def test_upload_without_csrf_header_is_refused(dash: TestClient) -> None:
    refused = dash.put("/images/whatever/file", content=b"x")
    assert refused.status_code == 403


def test_keypair_private_key_downloads_once(dash: TestClient) -> None:
    token = csrf_of(dash.get("/keypairs").text)
    made = dash.post("/keypairs", data={"name": "web key", "csrf_token": token})
    assert made.status_code == 200
    assert made.headers["content-disposition"] == 'attachment; filename="web_key.pem"'
    assert made.text.startswith("-----BEGIN OPENSSH PRIVATE KEY-----")
    listed = dash.get("/keypairs").text
    assert "web key" in listed and "PRIVATE KEY" not in listed
    pub = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFSmXtvM0KXYKiGz9kGL9t9lfwBtazjmG9aKfvOjEMa1 x"
    imported = dash.post("/keypairs/import", data={"name": "mine", "public_key": pub,
                                                   "csrf_token": token})
    assert "Key pair mine imported" in imported.text
    bad = dash.post("/keypairs/import", data={"name": "bad", "public_key": "ssh-rsa nope",
                                              "csrf_token": token})
    assert "Error:" in bad.text
    deleted = dash.post("/keypairs/mine/delete", data={"csrf_token": token})
    assert "Key pair mine deleted" in deleted.text


def test_security_group_and_rules(dash: TestClient) -> None:
    token = csrf_of(dash.get("/security-groups").text)
    made = dash.post("/security-groups", data={"name": "web", "description": "http",
                                               "csrf_token": token})
    assert "Security group created" in made.text
    group_path = str(made.url.path)
    added = dash.post(f"{group_path}/rules", data={"direction": "ingress", "ethertype": "IPv4",
                                                   "protocol": "tcp", "port_min": "80",
                                                   "remote_ip_prefix": "0.0.0.0/0",
                                                   "csrf_token": token})
    assert "Rule added" in added.text and "<td>80</td>" in added.text
    rule = re.search(r'/rules/([0-9a-f-]+)/delete', added.text)
    assert rule
    removed = dash.post(f"{group_path}/rules/{rule.group(1)}/delete", data={"csrf_token": token})
    assert "Rule deleted" in removed.text


def test_launch_detail_actions_and_console(dash: TestClient, compute: ComputeService,
                                           hypervisor: FakeHypervisor) -> None:
    form = dash.get("/servers/new").text
    token = csrf_of(form)
    launched = dash.post("/servers", data={"name": "web1", "image": IMAGE_ID, "flavor": "1",
                                           "security_groups": "default",
                                           "user_data": "#!/bin/sh\necho hi\n",
                                           "csrf_token": token})
    assert launched.status_code == 200 and "web1 is being built" in launched.text
    compute.wait_idle()
    server_id = str(launched.url.path).rsplit("/", 1)[1]
    rows = dash.get("/servers/rows").text
    assert "web1" in rows and "ACTIVE" in rows and 'hx-trigger="every 3s"' in rows
    assert "ACTIVE" in dash.get(f"/servers/{server_id}/status").text
    assert "Booting web1" in dash.get(f"/servers/{server_id}/log").text
    for kind in ("vnc", "serial"):  # QEMU would have made these
        hypervisor.console_socket(server_id, kind).touch()
    grant = dash.post(f"/servers/{server_id}/console/novnc", headers={"X-CSRF-Token": token})
    assert grant.status_code == 200, grant.text
    assert re.fullmatch(rf"/console/novnc/{server_id}/websockify\?token=[\w-]+",
                        grant.json()["path"])
    serial = dash.post(f"/servers/{server_id}/console/serial", headers={"X-CSRF-Token": token})
    assert serial.json()["path"].startswith(f"/console/serial/{server_id}?token=")
    stopped = dash.post(f"/servers/{server_id}/stop", data={"csrf_token": token})
    assert "stop requested" in stopped.text
    compute.wait_idle()
    refused = dash.post(f"/servers/{server_id}/console/novnc", headers={"X-CSRF-Token": token})
    assert refused.status_code == 409
    snap = dash.post(f"/servers/{server_id}/snapshot", data={"name": "web1-snap",
                                                            "csrf_token": token})
    assert "Snapshot web1-snap is being made" in snap.text
    compute.wait_idle()
    deleted = dash.post(f"/servers/{server_id}/delete", data={"csrf_token": token})
    assert "being deleted" in deleted.text
    compute.wait_idle()
    assert server_id not in hypervisor.guests
