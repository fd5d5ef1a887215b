"""Glance's interoperable import: stage, import with conversion, tasks, refusals."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from kumo.diskformat import qemuimg
from kumo.image.imports import ImageImporter, importer_of
from kumo.runtime import Runtime
from tests.image.conftest import qemu_img

V2 = "/image/v2"
MIB = 1024 * 1024


@pytest.fixture
def importer(runtime: Runtime) -> ImageImporter:
    return importer_of(runtime)


@pytest.fixture
def raw_disk(tmp_path: Path) -> Path:
    """A 16 MiB raw disk with something written in it (and holes)."""
    path = tmp_path / "disk.raw"
    with path.open("wb") as out:
        out.write(b"kumo raw disk\n" * 1000)
        out.truncate(16 * MIB)
    return path


def stage(api: TestClient, headers: dict[str, str], image_id: str, data: bytes) -> Any:
    return api.put(f"{V2}/images/{image_id}/stage", content=data, headers={
        **headers, "Content-Type": "application/octet-stream"})


def do_import(api: TestClient, headers: dict[str, str], image_id: str,
              method: dict[str, Any] | None = None) -> Any:
    return api.post(f"{V2}/images/{image_id}/import",
                    json={"method": method or {"name": "glance-direct"}}, headers=headers)


def image(api: TestClient, headers: dict[str, str], image_id: str) -> dict[str, Any]:
    return dict(api.get(f"{V2}/images/{image_id}", headers=headers).json())


def test_import_methods_are_announced(api: TestClient, admin_headers: dict[str, str],
                                      runtime: Runtime) -> None:
    made = api.post(f"{V2}/images", json={"name": "x"}, headers=admin_headers)
    assert made.headers["OpenStack-image-import-methods"] == "glance-direct"
    info = api.get(f"{V2}/info/import", headers=admin_headers).json()
    assert info["import-methods"]["value"] == ["glance-direct"]
    runtime.settings.image_import.allowed_url_prefixes = ["https://cloud.debian.org/images/"]
    info = api.get(f"{V2}/info/import", headers=admin_headers).json()
    assert info["import-methods"]["value"] == ["glance-direct", "web-download"]


def test_raw_imported_with_conversion_becomes_qcow2(
        api: TestClient, admin_headers: dict[str, str], new_image: Callable[..., dict[str, Any]],
        importer: ImageImporter, raw_disk: Path, runtime: Runtime) -> None:
    made = new_image(name="gentoo", disk_format="raw")
    assert stage(api, admin_headers, made["id"], raw_disk.read_bytes()).status_code == 204
    staged = image(api, admin_headers, made["id"])
    assert staged["status"] == "uploading" and staged["size"] == 16 * MIB
    assert do_import(api, admin_headers, made["id"]).status_code == 202
    importer.wait_idle()
    done = image(api, admin_headers, made["id"])
    assert done["status"] == "active", done
    assert done["disk_format"] == "qcow2" and done["virtual_size"] == 16 * MIB
    assert done["size"] < 16 * MIB and done["checksum"] and done["os_hash_value"]
    assert done["os_glance_failed_import"] == "" and "os_glance_import_task" not in done
    assert done["stores"] == "file" and "stores" not in staged  # where tempest looks
    # The stored bytes are a qcow2 holding the same disk.
    data = api.get(f"{V2}/images/{made['id']}/file", headers=admin_headers).content
    assert data[:4] == b"QFI\xfb"
    back = runtime.settings.data_dir / "back.qcow2"
    back.write_bytes(data)
    assert qemuimg.info(back, "qcow2").virtual_size == 16 * MIB
    assert not list(runtime.settings.staging_dir.iterdir())
    (task,) = api.get(f"{V2}/images/{made['id']}/tasks", headers=admin_headers).json()["tasks"]
    assert (task["type"], task["status"], task["result"]) == (
        "api_image_import", "success", {"image_id": made["id"]})
    assert task["input"]["import_req"] == {"method": {"name": "glance-direct"}}
    assert "expires_at" in task
    listed = api.get(f"{V2}/tasks", headers=admin_headers).json()["tasks"]
    assert [t["id"] for t in listed] == [task["id"]] and "input" not in listed[0]
    assert api.get(f"{V2}/tasks/{task['id']}", headers=admin_headers).json()["status"] == \
        "success"


def test_without_the_plugin_the_data_is_stored_as_staged(
        api: TestClient, admin_headers: dict[str, str], new_image: Callable[..., dict[str, Any]],
        importer: ImageImporter, raw_disk: Path, runtime: Runtime) -> None:
    runtime.settings.image_import.image_import_plugins = []
    made = new_image(name="plain", disk_format="raw")
    stage(api, admin_headers, made["id"], raw_disk.read_bytes())
    do_import(api, admin_headers, made["id"])
    importer.wait_idle()
    done = image(api, admin_headers, made["id"])
    assert (done["status"], done["disk_format"], done["size"]) == ("active", "raw", 16 * MIB)


@pytest.mark.parametrize(("claimed", "make", "reason"), [
    ("qcow2", "backing", "backing"),
    ("raw", "qcow2", "Image content is 'qcow2' but disk_format is 'raw'"),
])
def test_crafted_staged_data_is_refused_before_any_conversion(
        api: TestClient, admin_headers: dict[str, str], new_image: Callable[..., dict[str, Any]],
        importer: ImageImporter, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        runtime: Runtime, claimed: str, make: str, reason: str) -> None:
    base = tmp_path / "base.qcow2"
    qemu_img("create", "-q", "-f", "qcow2", base, "16M")
    crafted = tmp_path / "crafted.qcow2"
    if make == "backing":  # a qcow2 that would read a host file through its backing chain
        qemu_img("create", "-q", "-f", "qcow2", "-b", "/etc/shadow", "-F", "raw", crafted)
    else:
        crafted = base
    converted: list[Any] = []
    monkeypatch.setattr(qemuimg, "convert", lambda *a, **k: converted.append(a))
    made = new_image(name="crafted", disk_format=claimed)
    assert stage(api, admin_headers, made["id"], crafted.read_bytes()).status_code == 204
    assert do_import(api, admin_headers, made["id"]).status_code == 202
    importer.wait_idle()
    after = image(api, admin_headers, made["id"])
    assert after["status"] == "queued" and after["os_glance_failed_import"] == "file"
    (task,) = api.get(f"{V2}/images/{made['id']}/tasks", headers=admin_headers).json()["tasks"]
    assert task["status"] == "failure" and reason in task["message"], task["message"]
    assert converted == []  # refused before qemu-img convert ever ran
    assert not list(runtime.settings.staging_dir.iterdir())


def test_import_preconditions(api: TestClient, admin_headers: dict[str, str],
                              new_image: Callable[..., dict[str, Any]], raw_disk: Path,
                              importer: ImageImporter) -> None:
    made = new_image(name="p", disk_format="raw")
    unstaged = do_import(api, admin_headers, made["id"])
    assert unstaged.status_code == 409
    assert "needs to be staged before 'glance-direct'" in unstaged.text
    unknown = do_import(api, admin_headers, made["id"], {"name": "teleport"})
    assert unknown.status_code == 400 and "Unknown import method name 'teleport'" in unknown.text
    refused = do_import(api, admin_headers, made["id"], {"name": "web-download",
                                                         "uri": "https://example.com/x.img"})
    assert refused.status_code == 400 and "allowed_url_prefixes" in refused.text
    assert api.post(f"{V2}/images/{made['id']}/import", json={}, headers=admin_headers) \
        .status_code == 400
    stage(api, admin_headers, made["id"], raw_disk.read_bytes())
    again = stage(api, admin_headers, made["id"], b"more")
    assert again.status_code == 409
    do_import(api, admin_headers, made["id"])
    importer.wait_idle()
    assert do_import(api, admin_headers, made["id"]).status_code == 409  # active now


class _Files(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        if self.path.startswith("/away"):
            self.send_response(302)
            self.send_header("Location", "http://example.invalid/disk.raw")
            self.end_headers()
            return
        super().do_GET()


@pytest.fixture
def file_server(tmp_path: Path, raw_disk: Path) -> Iterator[str]:
    root = tmp_path / "www" / "images"
    root.mkdir(parents=True)
    (root / "disk.raw").write_bytes(raw_disk.read_bytes())
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), lambda *a: _Files(*a, directory=str(tmp_path / "www")))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_web_download_only_from_allowed_prefixes(
        api: TestClient, admin_headers: dict[str, str], new_image: Callable[..., dict[str, Any]],
        importer: ImageImporter, runtime: Runtime, file_server: str) -> None:
    runtime.settings.image_import.allowed_url_prefixes = [f"{file_server}/images/"]
    made = new_image(name="web", disk_format="raw")
    for uri in (f"{file_server}/secret/disk.raw", f"{file_server}/images/../secret",
                "file:///etc/passwd"):
        refused = do_import(api, admin_headers, made["id"], {"name": "web-download", "uri": uri})
        assert refused.status_code == 400 and "does not pass filtering" in refused.text
    answer = do_import(api, admin_headers, made["id"], {
        "name": "web-download", "uri": f"{file_server}/images/disk.raw"})
    assert answer.status_code == 202
    importer.wait_idle()
    done = image(api, admin_headers, made["id"])
    assert (done["status"], done["disk_format"], done["virtual_size"]) == (
        "active", "qcow2", 16 * MIB)
    # A redirect is checked like the URL itself.
    runtime.settings.image_import.allowed_url_prefixes = [f"{file_server}/"]
    other = new_image(name="redirected", disk_format="raw")
    do_import(api, admin_headers, other["id"], {"name": "web-download",
                                                "uri": f"{file_server}/away"})
    importer.wait_idle()
    (task,) = api.get(f"{V2}/images/{other['id']}/tasks", headers=admin_headers).json()["tasks"]
    assert task["status"] == "failure" and "does not pass filtering" in task["message"]


def test_recover_fails_tasks_kumo_stopped_in(
        api: TestClient, admin_headers: dict[str, str], new_image: Callable[..., dict[str, Any]],
        raw_disk: Path, runtime: Runtime, importer: ImageImporter) -> None:
    made = new_image(name="interrupted", disk_format="raw")
    stage(api, admin_headers, made["id"], raw_disk.read_bytes())
    from kumo.db.engine import session_scope
    from kumo.image import imports

    with session_scope(runtime.sessions) as session:  # as if kumo died after the 202
        task = imports.begin_import(session, _admin(runtime), runtime.settings, made["id"],
                                    {"method": {"name": "glance-direct"}}, None)
        task_id = task.id
    importer.recover()
    after = image(api, admin_headers, made["id"])
    assert after["status"] == "queued"
    shown = api.get(f"{V2}/tasks/{task_id}", headers=admin_headers).json()
    assert shown["status"] == "failure" and "kumo stopped during the import" in shown["message"]
    assert json.dumps(shown)  # a plain JSON document
    assert not (runtime.settings.staging_dir / made["id"]).exists()



def _admin(runtime: Runtime) -> Any:
    from datetime import UTC, datetime

    from kumo.api.context import RequestContext

    with runtime.engine.connect() as connection:
        project = connection.exec_driver_sql(
            "SELECT id FROM projects WHERE name = 'admin'").scalar_one()
        user = connection.exec_driver_sql("SELECT id FROM users WHERE name = 'admin'").scalar_one()
    return RequestContext(user_id=user, user_name="admin", project_id=project,
                          project_name="admin", roles=("admin",), token="t",
                          expires_at=datetime.now(UTC))
