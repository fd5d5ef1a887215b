"""Config drive ISOs, read back with pycdlib and checked with isoinfo."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pycdlib
import pytest

from kumo.metadata.configdrive import build_config_drive
from kumo.metadata.trees import Defaults
from tests.metadata.conftest import BINARY_USER_DATA, SERVER_A, make_view

VIEW = replace(make_view(SERVER_A, "alpha"), user_data=BINARY_USER_DATA, mtu=1450)


def read(iso: pycdlib.PyCdlib, **path: str) -> bytes:
    out = io.BytesIO()
    iso.get_file_from_iso_fp(out, **path)
    return out.getvalue()


def test_drive_reads_back_through_rock_ridge_and_joliet(tmp_path: Path) -> None:
    dest = build_config_drive(VIEW, tmp_path / "disk.config", Defaults(("169.254.2.3",)))
    assert dest == tmp_path / "disk.config" and dest.stat().st_size > 0
    assert [p.name for p in tmp_path.iterdir()] == ["disk.config"]  # no temp file left
    iso = pycdlib.PyCdlib()
    iso.open(str(dest))
    try:
        assert iso.pvd.volume_identifier.rstrip(b" ") == b"config-2"
        assert iso.has_rock_ridge() and iso.has_joliet()
        assert read(iso, rr_path="/openstack/latest/user_data") == BINARY_USER_DATA
        assert read(iso, joliet_path="/ec2/latest/user-data") == BINARY_USER_DATA
        md = json.loads(read(iso, rr_path="/openstack/latest/meta_data.json"))
        assert md["uuid"] == SERVER_A and md["public_keys"]["key-alpha"].startswith("ssh-")
        nd = json.loads(read(iso, rr_path="/openstack/2015-10-15/network_data.json"))
        assert nd["links"][0]["mtu"] == 1450
        ec2 = json.loads(read(iso, rr_path="/ec2/2009-04-04/meta-data.json"))
        assert ec2["instance-id"].startswith("i-")
        names = {child.file_identifier().decode() for child in iso.list_children(
            rr_path="/openstack")}
        assert {"latest", "2012-08-10", "2020-10-14"} <= names
    finally:
        iso.close()


def test_rebuilding_replaces_the_drive(tmp_path: Path) -> None:
    dest = tmp_path / "disk.config"
    build_config_drive(VIEW, dest)
    build_config_drive(replace(VIEW, user_data=b"second"), dest)
    iso = pycdlib.PyCdlib()
    iso.open(str(dest))
    try:
        assert read(iso, rr_path="/openstack/latest/user_data") == b"second"
    finally:
        iso.close()


@pytest.mark.skipif(shutil.which("isoinfo") is None, reason="isoinfo (genisoimage) missing")
def test_isoinfo_sees_label_joliet_and_rock_ridge(tmp_path: Path) -> None:
    dest = build_config_drive(VIEW, tmp_path / "cd.iso")
    info = subprocess.run(["isoinfo", "-d", "-i", str(dest)], capture_output=True,
                          text=True, check=True).stdout
    assert "Volume id: config-2" in info
    assert "Joliet" in info and "Rock Ridge signatures" in info
    listing = subprocess.run(["isoinfo", "-R", "-f", "-i", str(dest)], capture_output=True,
                             text=True, check=True).stdout.split("\n")
    assert "/openstack/latest/meta_data.json" in listing
    assert "/ec2/latest/meta-data.json" in listing
    data = subprocess.run(["isoinfo", "-R", "-x", "/openstack/latest/user_data", "-i",
                           str(dest)], capture_output=True, check=True).stdout
    assert data == BINARY_USER_DATA
