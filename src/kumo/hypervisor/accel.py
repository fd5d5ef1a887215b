"""KVM or software emulation (TCG): `[libvirt] virt_type = auto | kvm | qemu`.

`/dev/kvm` existing does not mean KVM works: inside some cloud VMs it is a
paravirtualised nested module (`kvm_pvm`) on which QEMU aborts with "failed to set
MSR 0x10a" or the guest dies with "emulation failure". So `auto` decides before any
guest starts: cheap host readings first (no /dev/kvm, kvm_pvm loaded, no vmx/svm
CPU flag), then one probe start of QEMU under KVM. The verdict is remembered in
`DATA/run/accel.json` for the host's boot, and said in one log line.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kumo.errors import ServiceUnavailable

log = logging.getLogger("kumo.hypervisor.accel")

QEMU = "qemu-system-x86_64"
PROBE_SECONDS = 2.0


class KvmUnavailable(ServiceUnavailable):
    """`virt_type = kvm` was asked for but KVM cannot run guests on this host."""


@dataclass(frozen=True)
class Accel:
    """The accelerator QEMU is started with, and why it was chosen."""

    name: str  # "kvm" | "tcg"
    reason: str

    def qemu_args(self) -> list[str]:
        if self.name == "kvm":
            return ["-accel", "kvm", "-cpu", "host"]
        return ["-accel", "tcg,thread=multi", "-cpu", "max"]


@dataclass(frozen=True)
class HostReadings:
    """What the host says about KVM; injected in tests."""

    dev_kvm: bool  # /dev/kvm exists and is readable and writable
    kvm_pvm: bool  # /sys/module/kvm_pvm: paravirtualised nested KVM
    cpu_flags: frozenset[str]
    boot_id: str

    @classmethod
    def read(cls, root: Path = Path("/")) -> HostReadings:
        kvm = root / "dev/kvm"
        flags: set[str] = set()
        cpuinfo = root / "proc/cpuinfo"
        if cpuinfo.exists():
            for line in cpuinfo.read_text(errors="replace").splitlines():
                if line.startswith("flags"):
                    flags.update(line.partition(":")[2].split())
                    break
        boot_id_path = root / "proc/sys/kernel/random/boot_id"
        return cls(
            dev_kvm=kvm.exists() and os.access(kvm, os.R_OK | os.W_OK),
            kvm_pvm=(root / "sys/module/kvm_pvm").exists(),
            cpu_flags=frozenset(flags),
            boot_id=boot_id_path.read_text().strip() if boot_id_path.exists() else "",
        )


def kvm_obstacle(readings: HostReadings) -> str | None:
    """Why KVM cannot work here, from the readings alone; None when it may."""
    if not readings.dev_kvm:
        return "/dev/kvm is missing or not readable and writable (kvm module not loaded?)"
    if readings.kvm_pvm:
        return (
            "/dev/kvm is a paravirtualised nested KVM (module kvm_pvm) on which guests fail "
            "(\"failed to set MSR\", \"emulation failure\")"
        )
    if not readings.cpu_flags & {"vmx", "svm"}:
        return "the CPU shows no vmx/svm flag (no hardware virtualisation exposed)"
    return None


def probe_kvm(qemu: str = QEMU, seconds: float = PROBE_SECONDS) -> str | None:
    """Start QEMU under KVM with just a BIOS for `seconds`; None if it kept running.

    A broken KVM makes QEMU abort while setting up or running the first vCPU, so
    surviving the BIOS is a cheap, honest test. Returns QEMU's complaint otherwise.
    """
    args = [
        qemu, "-accel", "kvm", "-cpu", "host", "-m", "64", "-nodefaults", "-no-user-config",
        "-display", "none", "-serial", "null", "-monitor", "none", "-no-reboot",
    ]
    try:
        process = subprocess.Popen(
            args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
    except OSError as exc:
        return f"cannot start {qemu}: {exc}"
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    if process.poll() is None:
        process.kill()
        process.wait()
        return None
    assert process.stderr is not None
    err = process.stderr.read().decode(errors="replace").strip().splitlines()
    return f"a probe start under KVM failed: {err[0] if err else f'exit {process.returncode}'}"


def decide(
    virt_type: str,
    readings: HostReadings,
    *,
    probe: Callable[[], str | None] = probe_kvm,
) -> Accel:
    """The accelerator for `virt_type`; KvmUnavailable when kvm is forced but unusable."""
    if virt_type == "qemu":
        return Accel("tcg", "virt_type = qemu")
    obstacle = kvm_obstacle(readings)
    if obstacle is None:
        obstacle = probe()
    if virt_type == "kvm":
        if obstacle is not None:
            raise KvmUnavailable(
                f"KVM unavailable: {obstacle}. Set [libvirt] virt_type = qemu (or auto) "
                "to run guests with software emulation."
            )
        return Accel("kvm", "virt_type = kvm")
    if obstacle is None:
        return Accel("kvm", "virt_type = auto and KVM works")
    return Accel("tcg", f"virt_type = auto and {obstacle}")


class AccelChooser:
    """Decides once per host boot, remembers the verdict in `cache_file`, logs once."""

    def __init__(
        self,
        virt_type: str,
        cache_file: Path,
        *,
        readings: Callable[[], HostReadings] = HostReadings.read,
        probe: Callable[[], str | None] = probe_kvm,
    ) -> None:
        self.virt_type = virt_type
        self.cache_file = cache_file
        self._readings = readings
        self._probe = probe
        self._chosen: Accel | None = None

    def choose(self) -> Accel:
        if self._chosen is not None:
            return self._chosen
        readings = self._readings()
        accel = self._cached(readings)
        if accel is None:
            accel = decide(self.virt_type, readings, probe=self._probe)
            self._remember(readings, accel)
        if accel.name == "tcg":
            log.warning(
                "using software emulation (-accel tcg,thread=multi -cpu max), "
                "not KVM: %s", accel.reason,
            )
        else:
            log.info("using KVM (-accel kvm -cpu host): %s", accel.reason)
        self._chosen = accel
        return accel

    def _cached(self, readings: HostReadings) -> Accel | None:
        try:
            data = json.loads(self.cache_file.read_text())
        except (OSError, ValueError):
            return None
        if data.get("boot_id") != readings.boot_id or data.get("virt_type") != self.virt_type:
            return None
        return Accel(str(data["accel"]), str(data["reason"]))

    def _remember(self, readings: HostReadings, accel: Accel) -> None:
        self.cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.cache_file.with_name(self.cache_file.name + ".tmp")
        tmp.write_text(json.dumps({
            "boot_id": readings.boot_id, "virt_type": self.virt_type,
            "accel": accel.name, "reason": accel.reason,
        }))
        os.replace(tmp, self.cache_file)
