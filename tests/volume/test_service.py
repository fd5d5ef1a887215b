"""The volume service after a crash: nothing stuck in a transient status."""

from __future__ import annotations

from kumo.db.engine import session_scope
from kumo.runtime import Runtime
from kumo.volume.models import Volume, VolumeAttachment, VolumeSnapshot
from kumo.volume.service import VolumeService


def test_recover_settles_every_transient_status(runtime: Runtime,
                                                volumes: VolumeService) -> None:
    driver = volumes.driver
    grown = driver.create_blank("grown", 2 * 1024**3)  # the extend finished, the record not
    doomed = driver.create_blank("doomed", 1024**3)
    driver.folder.joinpath("volume-half.part").write_bytes(b"half")
    with session_scope(runtime.sessions) as session:
        common = {"project_id": "p", "user_id": "u", "size": 1}
        session.add_all([
            Volume(id="creating", status="creating", **common),
            Volume(id="deleting", status="deleting", provider_location=doomed, **common),
            Volume(id="grown", status="extending", provider_location=grown, **common),
            Volume(id="attaching", status="attaching", **common),
            Volume(id="detaching", status="detaching", **common),
            VolumeAttachment(volume_id="attaching", server_id="s", status="attaching"),
            VolumeAttachment(id="a2", volume_id="detaching", server_id="s", status="detaching"),
            VolumeSnapshot(id="snap", volume_id="grown", status="creating", project_id="p",
                           user_id="u", size=1),
        ])
    volumes.recover()
    volumes.wait_idle()
    with session_scope(runtime.sessions) as session:
        status = {v.id: (v.status, v.size) for v in session.query(Volume)}
        assert status == {"creating": ("error", 1), "grown": ("available", 2),
                          "attaching": ("available", 1), "detaching": ("in-use", 1)}
        assert session.get(Volume, "creating").error == "kumo stopped while creating this volume"
        assert [a.status for a in session.query(VolumeAttachment)] == ["attached"]
        assert session.get(VolumeSnapshot, "snap").status == "error"
    assert not (driver.folder / doomed).exists()
    assert not (driver.folder / "volume-half.part").exists()
