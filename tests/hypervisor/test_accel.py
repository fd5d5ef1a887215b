"""virt_type auto|kvm|qemu: decided from host readings (injected) and remembered."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from kumo.hypervisor.accel import AccelChooser, HostReadings, KvmUnavailable, decide

GOOD = HostReadings(dev_kvm=True, kvm_pvm=False, cpu_flags=frozenset({"vmx", "sse2"}),
                    boot_id="b1")


def no_probe() -> str | None:
    raise AssertionError("the probe must not run")


def test_readings_from_proc_and_sys(tmp_path: Path) -> None:
    (tmp_path / "proc/sys/kernel/random").mkdir(parents=True)
    (tmp_path / "proc/cpuinfo").write_text("processor: 0\nflags\t\t: fpu sse2 svm\n")
    (tmp_path / "proc/sys/kernel/random/boot_id").write_text("abc\n")
    (tmp_path / "sys/module/kvm_pvm").mkdir(parents=True)
    readings = HostReadings.read(tmp_path)
    assert readings.kvm_pvm and "svm" in readings.cpu_flags and readings.boot_id == "abc"
    assert not readings.dev_kvm


def test_kvm_pvm_means_tcg_without_a_probe() -> None:
    readings = HostReadings(True, True, frozenset({"vmx"}), "b")
    accel = decide("auto", readings, probe=no_probe)
    assert accel.name == "tcg" and "kvm_pvm" in accel.reason
    assert accel.qemu_args() == ["-accel", "tcg,thread=multi", "-cpu", "max"]


def test_no_vmx_or_svm_means_tcg() -> None:
    accel = decide("auto", HostReadings(True, False, frozenset({"sse2"}), "b"), probe=no_probe)
    assert accel.name == "tcg" and "vmx/svm" in accel.reason


def test_missing_dev_kvm_means_tcg() -> None:
    accel = decide("auto", HostReadings(False, False, frozenset({"vmx"}), "b"), probe=no_probe)
    assert accel.name == "tcg" and "/dev/kvm" in accel.reason


def test_probe_decides_when_the_readings_look_fine() -> None:
    assert decide("auto", GOOD, probe=lambda: None).name == "kvm"
    failed = decide("auto", GOOD, probe=lambda: "a probe start under KVM failed: MSR")
    assert failed.name == "tcg" and "MSR" in failed.reason


def test_forced_kvm_that_cannot_work_is_a_clear_error() -> None:
    with pytest.raises(KvmUnavailable, match=r"KVM unavailable: .*kvm_pvm.*virt_type = qemu"):
        decide("kvm", HostReadings(True, True, frozenset(), "b"), probe=no_probe)
    assert decide("qemu", GOOD, probe=no_probe).name == "tcg"


def test_verdict_is_remembered_per_boot_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    probes: list[int] = []

    def probe() -> str | None:
        probes.append(1)
        return "a probe start under KVM failed: emulation failure"

    readings = {"now": GOOD}
    caplog.set_level(logging.INFO, logger="kumo.hypervisor.accel")
    cache_file = tmp_path / "run" / "accel.json"
    first = AccelChooser("auto", cache_file, readings=lambda: readings["now"], probe=probe)
    assert first.choose().name == "tcg" and first.choose().name == "tcg"
    assert len(probes) == 1
    lines = [r.message for r in caplog.records]
    assert len(lines) == 1 and "software emulation" in lines[0] and "emulation failure" in lines[0]
    # Another kumo process on the same boot reads the verdict instead of probing.
    assert AccelChooser("auto", cache_file, readings=lambda: GOOD, probe=probe).choose().name == (
        "tcg")
    assert len(probes) == 1
    # After a reboot of the host the question is asked again.
    readings["now"] = HostReadings(True, False, frozenset({"vmx"}), "b2")
    AccelChooser("auto", cache_file, readings=lambda: readings["now"], probe=probe).choose()
    assert len(probes) == 2


def test_real_host_probe_agrees_with_the_readings() -> None:
    """On this machine (kvm_pvm) and CI the verdict is TCG; on real hardware, KVM."""
    readings = HostReadings.read()
    accel = decide("auto", readings)
    if readings.kvm_pvm or not readings.dev_kvm:
        assert accel.name == "tcg"
