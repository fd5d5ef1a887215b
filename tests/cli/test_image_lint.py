"""`kumo image lint` as a user runs it: exit status, table, JSON, --fix -o."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kumo.cli.main import app
from tests.imagebuild.lint.images import good_tree, make_disk, write

runner = CliRunner()


def broken_image(tmp_path: Path) -> Path:
    root = good_tree(tmp_path / "root")
    write(root, "/etc/udev/rules.d/70-persistent-net.rules",
          'SUBSYSTEM=="net", ATTR{address}=="52:54:00:12:34:56", NAME="eth0"\n')
    return make_disk(root, tmp_path / "broken.qcow2", fmt="qcow2")


def test_clean_image_passes(tmp_path: Path) -> None:
    image = make_disk(good_tree(tmp_path / "root"), tmp_path / "good")
    result = runner.invoke(app, ["image", "lint", str(image)])
    assert result.exit_code == 0, result.output
    assert "PASS" in result.output


def test_error_finding_fails_with_table(tmp_path: Path) -> None:
    result = runner.invoke(app, ["image", "lint", str(broken_image(tmp_path))])
    assert result.exit_code == 1
    assert "persistent-net-rules" in result.output and "FAIL" in result.output


def test_json_output(tmp_path: Path) -> None:
    result = runner.invoke(app, ["image", "lint", "--format", "json",
                                 str(broken_image(tmp_path))])
    assert result.exit_code == 1
    body = json.loads(result.stdout)
    assert body["passed"] is False and body["errors"] == 1
    [finding] = body["findings"]
    assert finding["rule"] == "persistent-net-rules" and finding["severity"] == "error"
    assert finding["fixable"] is True and finding["fix"]
    assert "virtio-drivers" in body["rules"]


def test_fix_writes_a_passing_copy(tmp_path: Path) -> None:
    image = broken_image(tmp_path)
    before = image.read_bytes()
    out = tmp_path / "fixed.qcow2"
    result = runner.invoke(app, ["image", "lint", "--fix", "-o", str(out), "--format", "json",
                                 str(image)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["passed"] is True and body["remaining"] == []
    assert [f["rule"] for f in body["fixed"]] == ["persistent-net-rules"]
    assert image.read_bytes() == before
    assert runner.invoke(app, ["image", "lint", str(out)]).exit_code == 0


def test_bad_usage_and_unreadable_images(tmp_path: Path) -> None:
    image = make_disk(good_tree(tmp_path / "root"), tmp_path / "good")
    assert runner.invoke(app, ["image", "lint", "--fix", str(image)]).exit_code == 2
    missing = runner.invoke(app, ["image", "lint", str(tmp_path / "nope.qcow2")])
    assert missing.exit_code == 2 and "no such image" in missing.output
    garbage = tmp_path / "garbage.img"
    garbage.write_bytes(b"not a disk" * 100)
    result = runner.invoke(app, ["image", "lint", str(garbage)])
    assert result.exit_code == 1 and "root-filesystem" in result.output
