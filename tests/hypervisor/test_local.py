"""LocalHypervisor's faults a user can act on, and what it does without booting a guest."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from kumo.config import Settings
from kumo.hypervisor.accel import AccelChooser, HostReadings, KvmUnavailable
from kumo.hypervisor.driver import GuestSpec, GuestState
from kumo.hypervisor.local import GuestStartFailed, LocalHypervisor, NotEnoughMemory
from tests.hypervisor.test_imagecache import FakeFetcher, make_image

PVM = HostReadings(dev_kvm=True, kvm_pvm=True, cpu_flags=frozenset(), boot_id="x")


@pytest.fixture
def hv(tmp_path: Path) -> LocalHypervisor:
    fetcher = FakeFetcher()
    fetcher.add("img", make_image(tmp_path / "img.raw", "raw"), "raw")
    settings = Settings(data_dir=tmp_path / "d")
    accel = AccelChooser("qemu", settings.run_dir / "accel.json", readings=lambda: PVM)
    return LocalHypervisor(settings, fetcher, accel=accel)


def spec(**changes: object) -> GuestSpec:
    values: dict[str, object] = {"server_id": str(uuid.uuid4()), "name": "t", "image_id": "img",
                                 "vcpus": 1, "memory_mb": 64, "root_gb": 1}
    values.update(changes)
    return GuestSpec(**values)  # type: ignore[arg-type]


def test_unknown_server_is_missing(hv: LocalHypervisor) -> None:
    assert hv.status("nope").state is GuestState.MISSING
    assert hv.status("../etc").state is GuestState.MISSING
    assert hv.adopt() == {}


def test_not_enough_memory_is_refused_before_anything_is_written(hv: LocalHypervisor) -> None:
    wanted = spec(memory_mb=10**9)
    with pytest.raises(NotEnoughMemory, match="not enough memory: the server needs 1000000000 MB"):
        hv.spawn(wanted)
    assert not (hv.instances_path / wanted.server_id).exists()


def test_forced_kvm_that_does_not_work_is_the_fault(hv: LocalHypervisor) -> None:
    hv.accel = AccelChooser("kvm", hv.settings.run_dir / "accel.json", readings=lambda: PVM)
    with pytest.raises(KvmUnavailable, match="KVM unavailable"):
        hv.spawn(spec())


def test_qemu_stderr_is_the_fault_when_it_cannot_start(hv: LocalHypervisor,
                                                       tmp_path: Path) -> None:
    broken = spec(config_drive=tmp_path / "no-such-config.iso")
    with pytest.raises(GuestStartFailed, match=r"exited with status 1: .*no-such-config\.iso"):
        hv.spawn(broken)
    # Nothing keeps running; the disk stays for a retry or for destroy().
    assert hv.status(broken.server_id).state is GuestState.CRASHED
    hv.destroy(broken.server_id)
    assert hv.status(broken.server_id).state is GuestState.MISSING


def test_start_stop_without_waiting_for_the_guest(hv: LocalHypervisor) -> None:
    """QEMU starts in well under a second; a hard stop leaves SHUTOFF, files kept."""
    wanted = spec()
    started = hv.spawn(wanted)
    assert started.state is GuestState.RUNNING and started.pid
    folder = hv.instances_path / wanted.server_id
    assert {"disk", "console.log", "qmp.sock", "pid", "instance.json"} <= {
        p.name for p in folder.iterdir()}
    hv.power_off(wanted.server_id, graceful=False)
    assert hv.status(wanted.server_id).state is GuestState.SHUTOFF
    # A kumo restarted now finds nothing running and keeps it SHUTOFF.
    again = LocalHypervisor(hv.settings, hv.cache.fetcher, accel=hv.accel)
    assert again.adopt() == {}
    assert again.status(wanted.server_id).state is GuestState.SHUTOFF
    hv.destroy(wanted.server_id)
    assert not folder.exists()
