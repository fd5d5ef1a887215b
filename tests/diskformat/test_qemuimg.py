"""qemu-img as kumo runs it: QEMU's driver names, nova's limits, the checks at upload."""

from __future__ import annotations

from pathlib import Path

import pytest

from kumo.diskformat import qemuimg
from kumo.errors import BadRequest, ToolError
from tests.diskformat.crafted import CRAFTED, crafted_qcow2, encrypted_qcow2, good_qcow2
from tests.diskformat.formats import QEMU_FORMATS, small_image

# What qemu-img (or kumo after it) says about each crafted header.
REASONS = {
    "l1-size-2^31": "L1 table too large",
    "l1-offset-2^62": "corruption",
    "refcount-order-7": "Reference count entry width too large",
    "cluster-bits-0": "Unsupported cluster size",
    "cluster-bits-62": "Unsupported cluster size",
    "header-length-beyond-file": "header exceeds cluster size",
    "snapshots-huge": "Snapshot table too large",
}


def test_glance_names_map_to_qemu_drivers() -> None:
    assert qemuimg.driver("vhd") == "vpc"
    assert qemuimg.driver("ploop") == "parallels"
    assert qemuimg.driver("iso") == qemuimg.driver("ami") == "raw"
    assert qemuimg.driver("vhdx") == "vhdx" and qemuimg.driver("vpc") == "vpc"


@pytest.mark.parametrize("name", sorted(CRAFTED))
def test_crafted_qcow2_is_refused_with_the_reason(tmp_path: Path, name: str) -> None:
    path = crafted_qcow2(tmp_path / "bad.qcow2", name)
    with pytest.raises(BadRequest) as refused:
        qemuimg.check_upload(path, "qcow2")
    assert REASONS[name] in refused.value.message
    assert str(tmp_path) not in refused.value.message  # no server-side paths in the answer


def test_encrypted_qcow2_is_refused(tmp_path: Path) -> None:
    with pytest.raises(BadRequest, match="encrypted"):
        qemuimg.check_upload(encrypted_qcow2(tmp_path / "enc.qcow2"), "qcow2")


@pytest.mark.parametrize("disk_format", [*QEMU_FORMATS, "iso"])
def test_every_accepted_format_passes(tmp_path: Path, disk_format: str) -> None:
    found = qemuimg.check_upload(small_image(tmp_path, disk_format), disk_format)
    assert found.virtual_size > 0


def test_the_format_is_pinned(tmp_path: Path) -> None:
    """A qcow2 uploaded as vhd is not read as qcow2 (nor the other way round)."""
    with pytest.raises(BadRequest):
        qemuimg.check_upload(good_qcow2(tmp_path / "q.qcow2"), "vhd")


def test_inspection_runs_under_a_memory_limit(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """With the address-space limit made tiny, qemu-img cannot even start: the limit is real."""
    monkeypatch.setattr(qemuimg, "INSPECT_ADDRESS_SPACE", 8 * 1024 * 1024)
    with pytest.raises(ToolError):
        qemuimg.info(good_qcow2(tmp_path / "q.qcow2"), "qcow2")
