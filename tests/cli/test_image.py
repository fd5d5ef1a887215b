"""`kumo image ...` driven through the Typer app against a real `kumo up`."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from pathlib import Path

import pytest
import yaml
from click.testing import Result
from typer.testing import CliRunner

from kumo.cli.main import app
from kumo.diskformat import qemuimg
from tests.conftest import KumoProcess

pytestmark = pytest.mark.e2e


@pytest.fixture
def cli_env(kumo_up: KumoProcess, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The environment a user has after `kumo up`: clouds.yaml found via OS_CLIENT_CONFIG_FILE."""
    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(kumo_up.clouds_yaml))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture(scope="module")
def qcow2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ~4 MiB qcow2 with random data (several upload chunks), made by qemu-img."""
    workdir = tmp_path_factory.mktemp("cli-images")
    raw = workdir / "data.raw"
    raw.write_bytes(os.urandom(4 * 1024 * 1024))
    image = workdir / "small.qcow2"
    qemuimg.convert(raw, "raw", image, "qcow2")
    return image


def kumo(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), catch_exceptions=False)


def assert_one_line_error(result: Result, text: str) -> None:
    assert result.exit_code == 1, result.output
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("kumo: "), result.stderr
    assert text in lines[-1], result.stderr
    assert "Traceback" not in result.output


def test_create_list_show_download_delete(cli_env: Path, qcow2: Path) -> None:
    data = qcow2.read_bytes()
    created = kumo("image", "create", "cli-life", "--file", str(qcow2),
                   "--property", "os_distro=cirros", "--tag", "cli", "--min-ram", "64",
                   "-f", "json")
    assert created.exit_code == 0, created.output
    assert "Detected disk format: qcow2" in created.stderr
    assert "Uploading cli-life: 100%" in created.stderr
    image = json.loads(created.stdout)
    assert image["status"] == "active"
    assert (image["disk_format"], image["container_format"]) == ("qcow2", "bare")
    assert image["size"] == len(data)
    assert image["checksum"] == hashlib.md5(data).hexdigest()
    assert image["os_hash_value"] == hashlib.sha512(data).hexdigest()
    assert image["min_ram"] == 64
    assert image["tags"] == ["cli"]
    assert image["properties"]["os_distro"] == "cirros"

    listed = kumo("image", "list")
    assert listed.exit_code == 0, listed.output
    assert "| ID " in listed.stdout and "| Status" in listed.stdout
    row = next(line for line in listed.stdout.splitlines() if image["id"] in line)
    assert [cell.strip() for cell in row.split("|")[1:-1]] == [image["id"], "cli-life", "active"]
    only_id = kumo("image", "list", "--name", "cli-life", "-f", "value", "-c", "ID")
    assert only_id.stdout.split() == [image["id"]]
    long = kumo("image", "list", "--long", "--name", "cli-life", "-f", "json")
    (entry,) = json.loads(long.stdout)
    assert (entry["Disk Format"], entry["Size"], entry["Tags"]) == ("qcow2", len(data), ["cli"])

    shown = kumo("image", "show", "cli-life")  # by name
    assert shown.exit_code == 0, shown.output
    rows = {line.split("|")[1].strip(): line.split("|")[2].strip()
            for line in shown.stdout.splitlines()[3:-1]}
    assert rows["id"] == image["id"]
    assert rows["status"] == "active"
    assert rows["checksum"] == image["checksum"]
    assert "os_distro='cirros'" in rows["properties"]
    assert list(rows) == sorted(rows)

    target = cli_env / "saved.qcow2"
    saved = kumo("image", "download", image["id"], "-o", str(target))  # by id
    assert saved.exit_code == 0, saved.output
    assert target.read_bytes() == data
    assert f"Saved {len(data)} bytes" in saved.stderr
    assert "Downloading cli-life: 100%" in saved.stderr

    deleted = kumo("image", "delete", "cli-life")
    assert deleted.exit_code == 0, deleted.output
    gone = kumo("image", "show", image["id"])
    assert_one_line_error(gone, f"No image with a name or ID of '{image['id']}' exists.")


def test_failed_upload_deletes_the_queued_image(cli_env: Path, qcow2: Path) -> None:
    # A qcow2 file claimed to be vmdk: the server's inspector refuses it.
    result = kumo("image", "create", "cli-wrong-format", "--file", str(qcow2),
                  "--disk-format", "vmdk")
    assert result.exit_code == 1, result.output
    assert "Deleted the unfinished image" in result.stderr
    assert "Traceback" not in result.output
    left = kumo("image", "list", "--name", "cli-wrong-format", "-f", "value", "-c", "ID")
    assert left.exit_code == 0 and left.stdout.strip() == ""


def test_unsafe_file_is_refused_before_anything_is_created(cli_env: Path, qcow2: Path) -> None:
    overlay = cli_env / "overlay.qcow2"
    qemuimg.create_overlay(qcow2, "qcow2", overlay)
    result = kumo("image", "create", "cli-overlay", "--file", str(overlay))
    assert_one_line_error(result, "backing file")
    left = kumo("image", "list", "--name", "cli-overlay", "-f", "value")
    assert left.stdout.strip() == ""


def test_raw_is_detected(cli_env: Path) -> None:
    raw = cli_env / "disk.img"
    raw.write_bytes(b"\0" * 1024 * 1024)
    result = kumo("image", "create", "cli-raw", "--file", str(raw), "-f", "value",
                  "-c", "disk_format", "-c", "status")
    assert result.exit_code == 0, result.output
    assert result.stdout.split() == ["raw", "active"]
    assert kumo("image", "delete", "cli-raw").exit_code == 0


def test_download_refuses_data_that_does_not_match(
    cli_env: Path, kumo_up: KumoProcess, qcow2: Path
) -> None:
    created = kumo("image", "create", "cli-corrupt", "--file", str(qcow2), "-f", "value",
                   "-c", "id")
    image_id = created.stdout.strip()
    # Flip bytes in the stored copy, as a failing disk would.
    stored = [p for p in kumo_up.data_dir.rglob(f"*{image_id}*") if p.is_file()
              and p.stat().st_size == qcow2.stat().st_size]
    assert len(stored) == 1, stored
    with open(stored[0], "r+b") as handle:
        handle.seek(1024 * 1024)
        handle.write(b"corrupted!")
    target = cli_env / "corrupt.qcow2"
    result = kumo("image", "download", "cli-corrupt", "-o", str(target))
    assert_one_line_error(result, "does not match its sha512")
    assert not target.exists()
    assert [p.name for p in cli_env.glob(".corrupt.qcow2*")] == []
    assert kumo("image", "delete", image_id).exit_code == 0


def test_delete_goes_on_past_a_missing_image(cli_env: Path, qcow2: Path) -> None:
    assert kumo("image", "create", "cli-del", "--file", str(qcow2)).exit_code == 0
    result = kumo("image", "delete", "no-such-image", "cli-del")
    assert_one_line_error(result, "failed to delete 1 of 2 images")
    assert "No image with a name or ID of 'no-such-image'" in result.stderr
    assert kumo("image", "list", "--name", "cli-del", "-f", "value").stdout.strip() == ""


def test_protected_image_cannot_be_deleted(cli_env: Path, qcow2: Path) -> None:
    created = kumo("image", "create", "cli-protected", "--file", str(qcow2), "--protected",
                   "-f", "value", "-c", "protected")
    assert created.stdout.strip() == "True"
    result = kumo("image", "delete", "cli-protected")
    assert result.exit_code == 1
    assert "(HTTP 403)" in result.stderr or "(HTTP 409)" in result.stderr
    assert kumo("image", "show", "cli-protected").exit_code == 0


def test_not_found_and_bad_options(cli_env: Path) -> None:
    assert_one_line_error(kumo("image", "show", "nope"),
                          "No image with a name or ID of 'nope' exists.")
    assert_one_line_error(kumo("image", "download", "nope", "-o", "x"), "'nope'")
    missing = kumo("image", "create", "x", "--file", "/no/such/file")
    assert_one_line_error(missing, "/no/such/file: no such file")
    bad = kumo("image", "create", "x", "--disk-format", "floppy")
    assert bad.exit_code == 2 and "'floppy' is not one of" in bad.output


def test_image_without_data(cli_env: Path) -> None:
    created = kumo("image", "create", "cli-empty", "-f", "json")
    assert created.exit_code == 0, created.output
    image = json.loads(created.stdout)
    assert (image["status"], image["disk_format"]) == ("queued", "raw")
    result = kumo("image", "download", "cli-empty", "-o", str(cli_env / "empty.img"))
    assert_one_line_error(result, "is queued, not active")
    assert not (cli_env / "empty.img").exists()
    assert kumo("image", "delete", image["id"]).exit_code == 0


def test_kumo_not_running(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    clouds = cli_env / "down.yaml"
    clouds.write_text(yaml.safe_dump({"clouds": {"kumo": {"auth": {
        "auth_url": f"http://127.0.0.1:{port}/identity/v3", "username": "admin",
        "password": "x", "project_name": "admin"}}}}))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    assert_one_line_error(kumo("image", "list"), "is `kumo up` running?")


def test_wrong_password(cli_env: Path, kumo_up: KumoProcess,
                        monkeypatch: pytest.MonkeyPatch) -> None:
    document = yaml.safe_load(kumo_up.clouds_yaml.read_text())
    document["clouds"]["kumo"]["auth"]["password"] = "wrong"
    clouds = cli_env / "wrong.yaml"
    clouds.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    assert_one_line_error(kumo("image", "list"), "authentication failed for user 'admin'")


def test_os_cloud_option_picks_the_cloud(cli_env: Path, kumo_up: KumoProcess,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    document = yaml.safe_load(kumo_up.clouds_yaml.read_text())
    document["clouds"]["lab"] = document["clouds"].pop("kumo")
    clouds = cli_env / "lab.yaml"
    clouds.write_text(yaml.safe_dump(document))
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(clouds))
    assert_one_line_error(kumo("image", "list"), "no cloud named 'kumo'")
    assert kumo("image", "list", "--os-cloud", "lab").exit_code == 0
    monkeypatch.setenv("OS_CLOUD", "lab")
    assert kumo("image", "list").exit_code == 0


def test_lint_refuses_an_image_with_errors_unless_forced(cli_env: Path, qcow2: Path) -> None:
    # Random data has no root filesystem: an error-level finding.
    refused = kumo("image", "create", "cli-lint", "--file", str(qcow2), "--lint")
    assert_one_line_error(refused, "small.qcow2; fix them or pass --force")
    assert "root-filesystem" in refused.stderr
    assert "Uploading" not in refused.stderr
    assert kumo("image", "list", "--name", "cli-lint", "-f", "value").stdout.strip() == ""
    forced = kumo("image", "create", "cli-lint", "--file", str(qcow2), "--lint", "--force",
                  "-f", "value", "-c", "status")
    assert forced.exit_code == 0, forced.output
    assert "root-filesystem" in forced.stderr
    assert forced.stdout.strip() == "active"
    assert kumo("image", "delete", "cli-lint").exit_code == 0
