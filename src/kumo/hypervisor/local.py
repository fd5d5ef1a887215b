"""`LocalHypervisor`: this host's guests, one QEMU process each (the `Hypervisor` protocol).

A guest's folder is `DATA/instances/<server_id>/`: `disk` (qcow2 overlay on the
cached base), `console.log`, `qmp.sock`, `pid`, `qemu.log` (QEMU's stderr),
`instance.json` (image and disk format, for the cache manager), and the markers
`shutoff` (stopped on purpose) and `fault` (why it crashed).

kumo stopping does not stop guests: they run on, as under nova-compute, and
`adopt()` finds them again by their pid files when kumo starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from kumo.config import Settings
from kumo.errors import (
    Conflict,
    InsufficientStorage,
    KumoError,
    NotFound,
    ServiceUnavailable,
    ToolError,
)
from kumo.hypervisor import blockdev, qemu
from kumo.hypervisor.accel import Accel, AccelChooser
from kumo.hypervisor.cache_manager import INSTANCE_RECORD, run_pass
from kumo.hypervisor.driver import GuestSpec, GuestState, GuestStatus, PortForward, VolumeDisk
from kumo.hypervisor.fetcher import ImageFetcher
from kumo.hypervisor.imagecache import ImageCache
from kumo.hypervisor.lifecycle import GuestLifecycle
from kumo.hypervisor.qmp import QMPClient, QMPError
from kumo.workers import cancel, every

if TYPE_CHECKING:
    from kumo.runtime import Runtime

log = logging.getLogger("kumo.hypervisor")

SHUTOFF_MARKER = "shutoff"
VOLUME_PORTS = "volumes.json"  # volume id -> the PCIe root port it is plugged into
FAULT_FILE = "fault"
START_TIMEOUT = 30.0
# A system_reset in the first milliseconds of a new QEMU, while SeaBIOS is still setting
# itself up, leaves the vCPU looping in the firmware (real mode, CS=f000, no display) for
# good. Measured with QEMU 7.2, q35, TCG: 24 of 30 resets sent right after the monitor's
# first answer hung, none of 15 sent 20-400 ms later. A guest this young waits until it is
# this old before a reset.
RESET_SETTLE = 2.0
MEMORY_OVERHEAD_MB = 64  # QEMU's own needs beyond guest RAM that must exist up front
CONSOLE_TAIL_BYTES = 1024 * 1024


class NotEnoughMemory(ServiceUnavailable):
    """The host has less free memory than the guest asks for."""


class GuestStartFailed(ToolError):
    """QEMU exited while starting; the message carries its stderr."""


def mem_available_mb(meminfo: Path = Path("/proc/meminfo")) -> int:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) // 1024
    return 0


def _tail(path: Path, lines: int = 5) -> str:
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 8192))
            text = handle.read().decode(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


class LocalHypervisor(GuestLifecycle):
    """This host's guests under QEMU, with nova's image cache under `instances/_base`."""

    def __init__(
        self,
        settings: Settings,
        fetcher: ImageFetcher,
        *,
        clock: Callable[[], float] = time.time,
        accel: AccelChooser | None = None,
        soft_reboot_timeout: float = 60.0,
    ) -> None:
        self.settings = settings
        self.instances_path = settings.instances_path
        self.cache = ImageCache(settings.base_dir, fetcher, settings.compute, clock=clock)
        self.accel = accel or AccelChooser(
            settings.compute.virt_type, settings.run_dir / "accel.json"
        )
        self.soft_reboot_timeout = soft_reboot_timeout
        self._procs: dict[str, qemu.QemuProcess] = {}
        self._guard = threading.Lock()
        self._guest_locks: dict[str, threading.RLock] = {}
        self._task: asyncio.Task[None] | None = None

    # -- helpers -----------------------------------------------------------

    def folder(self, server_id: str) -> Path:
        if not server_id or "/" in server_id or server_id.startswith((".", "_")):
            raise NotFound(f"no guest {server_id!r}")
        return self.instances_path / server_id

    def _lock(self, server_id: str) -> threading.RLock:
        with self._guard:
            return self._guest_locks.setdefault(server_id, threading.RLock())

    def _process(self, server_id: str) -> qemu.QemuProcess | None:
        """The guest's live QEMU, or None (reaping a dead child on the way)."""
        proc = self._procs.get(server_id)
        if proc is not None and proc.popen is not None:
            # Our own child: waitpid is the truth (a dying QEMU's cmdline is already empty).
            return proc if proc.popen.poll() is None else None
        pid = proc.pid if proc is not None else self._pid_from_file(server_id)
        if pid is None or not qemu.is_our_qemu(pid, server_id):
            return None
        return proc or qemu.QemuProcess(pid)

    def _pid_from_file(self, server_id: str) -> int | None:
        try:
            return int((self.folder(server_id) / qemu.PID_FILE).read_text().strip())
        except (OSError, ValueError):
            return None

    def _qmp(self, server_id: str, timeout: float = 5.0) -> QMPClient:
        return QMPClient.connect(self.folder(server_id) / qemu.QMP_SOCKET, timeout=timeout)

    def _ports(self, server_id: str, timeout: float = 5.0) -> dict[str, int]:
        with self._qmp(server_id, timeout) as monitor:
            return qemu.parse_usernet(monitor.human("info usernet"))

    # -- starting ----------------------------------------------------------

    def spawn(self, spec: GuestSpec) -> GuestStatus:
        """Cache the image (`_base`), create the root disk overlay, start QEMU."""
        with self._lock(spec.server_id):
            folder = self.folder(spec.server_id)
            if self._process(spec.server_id) is not None:
                raise Conflict(f"server {spec.server_id} is already running on this host")
            accel = self.accel.choose()  # KvmUnavailable before anything is written
            self._check_memory(spec)
            folder.mkdir(parents=True, exist_ok=True)
            disk = folder / qemu.DISK
            try:
                if spec.root_volume is not None:
                    record = {"image_id": spec.image_id or None,
                              "root_volume": spec.root_volume.volume_id}
                    (folder / INSTANCE_RECORD).write_text(json.dumps(record))
                elif not disk.exists():
                    made = self.cache.create_disk(spec.image_id, disk, spec.root_gb)
                    record = {"image_id": spec.image_id, "disk_format": made.format,
                              "base": str(made.base)}
                    if made.cdrom is not None:
                        record["cdrom"] = str(made.cdrom)
                    (folder / INSTANCE_RECORD).write_text(json.dumps(record))
            except ToolError as exc:
                raise self._storage_error(exc) from None
            return self._start(spec, accel_args=accel)

    def power_on(self, spec: GuestSpec) -> GuestStatus:
        """Start a SHUTOFF (or CRASHED) guest again on its existing disk."""
        with self._lock(spec.server_id):
            folder = self.folder(spec.server_id)
            if spec.root_volume is None and not (folder / qemu.DISK).exists():
                raise NotFound(f"server {spec.server_id} has no disk on this host")
            if self._process(spec.server_id) is not None:
                return self.status(spec.server_id)
            accel = self.accel.choose()
            self._check_memory(spec)
            return self._start(spec, accel_args=accel)

    def _check_memory(self, spec: GuestSpec) -> None:
        available = mem_available_mb()
        if available < spec.memory_mb + MEMORY_OVERHEAD_MB:
            raise NotEnoughMemory(
                f"not enough memory: the server needs {spec.memory_mb} MB (+{MEMORY_OVERHEAD_MB} "
                f"MB for QEMU) and this host has {available} MB available; stop other servers "
                "or use a smaller flavor"
            )

    @staticmethod
    def _storage_error(exc: ToolError) -> KumoError:
        if "No space left" in exc.message:
            return InsufficientStorage(f"disk full: {exc.message}")
        return exc

    def _start(self, spec: GuestSpec, *, accel_args: Accel, incoming: bool = False
               ) -> GuestStatus:
        folder = self.folder(spec.server_id)
        try:
            record = json.loads((folder / INSTANCE_RECORD).read_text())
        except (OSError, ValueError):
            record = {}
        cdrom = Path(record["cdrom"]) if record.get("cdrom") else None
        args = qemu.build_args(spec, accel_args, disk_format=record.get("disk_format", "qcow2"),
                               rescue_format=record.get("rescue_format", "qcow2"),
                               incoming=incoming, cdrom=cdrom,
                               pcie_ports=self.settings.compute.num_pcie_ports,
                               volume_ports=self._volume_ports(folder))
        self._save_volume_ports(folder, qemu.volume_layout(
            spec.volumes, self.settings.compute.num_pcie_ports, self._volume_ports(folder)))
        for stale in (qemu.QMP_SOCKET, qemu.VNC_SOCKET, qemu.SERIAL_SOCKET, qemu.PID_FILE,
                      FAULT_FILE):
            (folder / stale).unlink(missing_ok=True)
        started = time.monotonic()
        log_size = (folder / qemu.STDERR_LOG).stat().st_size if (
            folder / qemu.STDERR_LOG).exists() else 0
        try:
            proc = qemu.launch(args, folder, spec.netns)
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise InsufficientStorage(f"disk full: {exc}") from None
            raise
        self._procs[spec.server_id] = proc
        deadline = started + START_TIMEOUT
        while True:
            code = proc.returncode()
            if code is not None:
                self._procs.pop(spec.server_id, None)
                raise GuestStartFailed(qemu.QEMU, self._stderr_since(folder, log_size, code))
            try:
                ports = self._ports(spec.server_id, timeout=0.2)
                break
            except QMPError:
                if time.monotonic() > deadline:
                    self._kill(proc)
                    raise GuestStartFailed(
                        qemu.QEMU, f"monitor did not answer within {START_TIMEOUT:.0f} s"
                    ) from None
                time.sleep(0.02)
        (folder / SHUTOFF_MARKER).unlink(missing_ok=True)
        log.info("server %s started: QEMU pid %s, forwards %s", spec.server_id, proc.pid, ports)
        return GuestStatus(GuestState.RUNNING, host_ports=ports, pid=proc.pid)

    @staticmethod
    def _stderr_since(folder: Path, offset: int, code: int) -> str:
        try:
            with (folder / qemu.STDERR_LOG).open("rb") as handle:
                handle.seek(offset)
                text = handle.read(4000).decode(errors="replace").strip()
        except OSError:
            text = ""
        how = f"killed by signal {-code}" if code < 0 else f"exited with status {code}"
        return f"{how}: {text or '(no error output)'}"

    # -- stopping ----------------------------------------------------------

    def power_off(self, server_id: str, *, graceful: bool = True, timeout: float = 60) -> None:
        """ACPI power-down, then force off after `timeout` (or at once if not graceful)."""
        with self._lock(server_id):
            folder = self.folder(server_id)
            if not folder.exists():
                raise NotFound(f"server {server_id} is not on this host")
            (folder / SHUTOFF_MARKER).touch()
            proc = self._process(server_id)
            if proc is None:
                return
            if graceful and self._powerdown(server_id, timeout):
                log.info("server %s powered off by its guest", server_id)
            self._quit(server_id, proc)

    def _powerdown(self, server_id: str, timeout: float) -> bool:
        """Press the ACPI power button; True once the guest has shut down."""
        try:
            with self._qmp(server_id) as monitor:
                monitor.execute("system_powerdown")
                deadline = time.monotonic() + timeout
                while time.monotonic() < deadline:
                    if monitor.execute("query-status").get("status") == "shutdown":
                        return True
                    time.sleep(0.2)
        except QMPError:
            return self._process(server_id) is None
        log.warning("server %s did not power off within %.0f s; forcing", server_id, timeout)
        return False

    def _quit(self, server_id: str, proc: qemu.QemuProcess) -> None:
        with contextlib.suppress(QMPError), self._qmp(server_id, timeout=2) as monitor:
            monitor.execute("quit")
        if not self._wait_gone(server_id, proc, 10):
            self._kill(proc)
            self._wait_gone(server_id, proc, 10)
        self._procs.pop(server_id, None)

    def _wait_gone(self, server_id: str, proc: qemu.QemuProcess, seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if proc.popen is not None:
                if proc.popen.poll() is not None:
                    return True
            elif not qemu.is_our_qemu(proc.pid, server_id):
                return True
            time.sleep(0.05)
        return False

    @staticmethod
    def _kill(proc: qemu.QemuProcess) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        if proc.popen is not None:
            proc.popen.wait(10)

    def reboot(self, server_id: str, *, hard: bool = False) -> GuestStatus:
        """Soft: ACPI power-down then start again in the same QEMU (hard reset if the
        guest ignores it); hard: reset the virtual machine at once (a QEMU started under
        RESET_SETTLE seconds ago is let past its firmware's first steps first)."""
        with self._lock(server_id):
            proc = self._process(server_id)
            if proc is None:
                raise Conflict(f"server {server_id} is not running; start it instead")
            if not hard and not self._powerdown(server_id, self.soft_reboot_timeout):
                log.warning("server %s ignored the soft reboot; resetting it", server_id)
            age = qemu.process_age(proc.pid)
            if age is not None and age < RESET_SETTLE:
                time.sleep(RESET_SETTLE - age)
            with self._qmp(server_id) as monitor:
                monitor.execute("system_reset")
                if monitor.execute("query-status").get("status") != "running":
                    monitor.execute("cont")
            return self.status(server_id)

    def destroy(self, server_id: str) -> None:
        """Stop QEMU if running and remove every file of the server."""
        with self._lock(server_id):
            folder = self.folder(server_id)
            proc = self._process(server_id)
            if proc is not None:
                self._kill(proc)
                self._wait_gone(server_id, proc, 10)
            self._procs.pop(server_id, None)
            shutil.rmtree(folder, ignore_errors=True)

    # -- looking -----------------------------------------------------------

    def status(self, server_id: str) -> GuestStatus:
        """What the guest is doing now (never raises for an unknown server: MISSING)."""
        try:
            folder = self.folder(server_id)
        except NotFound:
            return GuestStatus(GuestState.MISSING)
        if not folder.is_dir():
            return GuestStatus(GuestState.MISSING)
        with self._lock(server_id):
            proc = self._process(server_id)
            state, ports = "unknown", {}
            if proc is not None:
                try:
                    with self._qmp(server_id, timeout=2) as monitor:
                        state = monitor.execute("query-status").get("status")
                        ports = qemu.parse_usernet(monitor.human("info usernet"))
                except QMPError:
                    state, ports = "unknown", {}
                    if self._wait_gone(server_id, proc, 1.0):
                        proc = None
            if proc is not None:
                if state == "shutdown":  # the guest powered itself off
                    (folder / SHUTOFF_MARKER).touch()
                    self._quit(server_id, proc)
                    return GuestStatus(GuestState.SHUTOFF)
                if state in ("internal-error", "guest-panicked"):
                    fault = f"the guest stopped: QEMU reports {state}"
                    return GuestStatus(GuestState.CRASHED, fault=fault, pid=proc.pid)
                return GuestStatus(GuestState.RUNNING, host_ports=ports, pid=proc.pid)
            if (folder / SHUTOFF_MARKER).exists():
                self._procs.pop(server_id, None)
                return GuestStatus(GuestState.SHUTOFF)
            return GuestStatus(GuestState.CRASHED, fault=self._fault(server_id, folder))

    def _fault(self, server_id: str, folder: Path) -> str:
        """Why QEMU is gone, said once and kept in `fault` (the exit status is read once)."""
        fault_file = folder / FAULT_FILE
        if fault_file.exists():
            return fault_file.read_text()
        proc = self._procs.pop(server_id, None)
        if proc is not None and proc.popen is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.popen.wait(5)
        code = proc.returncode() if proc is not None else None
        if code is None:
            how = "QEMU is no longer running and kumo did not stop it"
        elif code < 0:
            how = f"QEMU was killed by signal {-code} ({signal.Signals(-code).name})"
        else:
            how = f"QEMU exited unexpectedly with status {code}"
        tail = _tail(folder / qemu.STDERR_LOG)
        fault = how + (f"; its last error output: {tail}" if tail else "")
        fault_file.write_text(fault)
        log.warning("server %s crashed: %s", server_id, fault)
        return fault

    def console_log(self, server_id: str, length: int | None = None) -> str:
        """The serial console output (at most its last MiB); the last `length` lines."""
        path = self.folder(server_id) / qemu.CONSOLE_LOG
        if not path.exists():
            if not self.folder(server_id).is_dir():
                raise NotFound(f"server {server_id} is not on this host")
            return ""
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - CONSOLE_TAIL_BYTES))
            text = handle.read().decode("utf-8", errors="replace").replace("\r\n", "\n")
        if length is not None:
            lines = text.splitlines(keepends=True)
            text = "".join(lines[-length:]) if length > 0 else ""
        return text

    def console_socket(self, server_id: str, kind: str) -> Path:
        """The unix socket of the guest's `vnc` screen or `serial` port (may not exist)."""
        names = {"vnc": qemu.VNC_SOCKET, "serial": qemu.SERIAL_SOCKET}
        if kind not in names:
            raise NotFound(f"no {kind} console")
        return self.folder(server_id) / names[kind]

    def set_forwards(self, server_id: str, forwards: tuple[PortForward, ...]) -> dict[str, int]:
        """Replace the running guest's host forwards (security-group change)."""
        with self._lock(server_id):
            if self._process(server_id) is None:
                raise Conflict(f"server {server_id} is not running")
            for forward in forwards:
                qemu.forward_rule(forward)  # validate all before changing anything
            with self._qmp(server_id) as monitor:
                current = qemu.parse_usernet(monitor.human("info usernet"))
                wanted = {f"{f.protocol}/{f.guest_port}": f for f in forwards}
                for key, host_port in current.items():
                    keep = wanted.get(key)
                    if keep is not None and keep.host_port in (0, host_port):
                        del wanted[key]
                        continue
                    proto = key.split("/")[0]
                    monitor.human(f"hostfwd_remove n0 {proto}:127.0.0.1:{host_port}")
                for forward in wanted.values():
                    out = monitor.human(f"hostfwd_add n0 {qemu.forward_rule(forward)}")
                    if out.strip():
                        raise Conflict(f"cannot forward {forward.protocol}/{forward.guest_port}: "
                                       f"{out.strip()}")
                return qemu.parse_usernet(monitor.human("info usernet"))

    def snapshot(self, server_id: str, dest: Path) -> str:
        """A standalone qcow2 of the root disk at `dest`; a running guest is paused meanwhile."""
        from kumo.diskformat import qemuimg

        with self._lock(server_id):
            folder = self.folder(server_id)
            disk = folder / qemu.DISK
            if not disk.exists():
                raise NotFound(f"server {server_id} has no disk on this host")
            record = json.loads((folder / INSTANCE_RECORD).read_text())
            running = self._process(server_id) is not None
            tmp = dest.with_name(dest.name + ".part")
            monitor = self._qmp(server_id) if running else None
            try:
                if monitor is not None:
                    was = monitor.execute("query-status").get("status")
                    # `stop` drains and flushes the guest's I/O: the disk is consistent
                    # (as after a power cut) while it is copied.
                    monitor.execute("stop")
                try:
                    qemuimg.convert(disk, record.get("disk_format", "qcow2"), tmp, "qcow2",
                                    force_share=running)
                finally:
                    if monitor is not None and was == "running":
                        monitor.execute("cont")
                os.replace(tmp, dest)
            except ToolError as exc:
                raise self._storage_error(exc) from None
            finally:
                tmp.unlink(missing_ok=True)
                if monitor is not None:
                    monitor.close()
            return "qcow2"

    # -- volumes -------------------------------------------------------------

    def _monitor_of_running(self, server_id: str) -> QMPClient | None:
        if self._process(server_id) is None:
            return None
        return self._qmp(server_id, timeout=10)

    @staticmethod
    def _volume_ports(folder: Path) -> dict[str, str]:
        """Which root port each attached volume sits on (kept so a restart, and a resumed
        suspend, puts every disk back where the guest had it)."""
        try:
            found = json.loads((folder / VOLUME_PORTS).read_text())
        except (OSError, ValueError):
            return {}
        return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}

    @staticmethod
    def _save_volume_ports(folder: Path, ports: dict[str, str]) -> None:
        tmp = folder / f".{VOLUME_PORTS}.tmp"
        tmp.write_text(json.dumps(ports, sort_keys=True))
        os.replace(tmp, folder / VOLUME_PORTS)

    def attach_volume(self, server_id: str, disk: VolumeDisk) -> None:
        """Hot-plug `disk` onto a free PCIe root port of the running guest.

        A server that is not running gets the volume when it next starts (compute
        passes its attachments in the GuestSpec), as with nova.
        """
        with self._lock(server_id):
            monitor = self._monitor_of_running(server_id)
            if monitor is None:
                return
            with monitor:
                port = blockdev.hot_plug(monitor, disk, self.settings.compute.num_pcie_ports)
            folder = self.folder(server_id)
            self._save_volume_ports(folder, {**self._volume_ports(folder),
                                             disk.volume_id: port})
            log.info("server %s: volume %s plugged into %s", server_id, disk.volume_id, port)

    def detach_volume(self, server_id: str, volume_id: str) -> None:
        """Ask the running guest to release the volume and wait until it has (nova's
        `device_detach_timeout` x `device_detach_attempts`); a DetachTimeout otherwise."""
        compute = self.settings.compute
        with self._lock(server_id):
            folder = self.folder(server_id)
            monitor = self._monitor_of_running(server_id)
            if monitor is not None:
                with monitor:
                    started = time.monotonic()
                    blockdev.unplug(monitor, volume_id, timeout=compute.device_detach_timeout,
                                    attempts=compute.device_detach_attempts)
                log.info("server %s: volume %s unplugged after %.2f s", server_id, volume_id,
                         time.monotonic() - started)
            ports = self._volume_ports(folder)
            if ports.pop(volume_id, None) is not None:
                self._save_volume_ports(folder, ports)

    def extend_volume(self, server_id: str, volume_id: str, size: int) -> None:
        """Grow a plugged volume to `size` bytes through QEMU (which holds the file)."""
        with self._lock(server_id):
            monitor = self._monitor_of_running(server_id)
            if monitor is None:
                raise Conflict(f"server {server_id} is not running")
            with monitor:
                blockdev.resize(monitor, volume_id, size)

    @contextlib.contextmanager
    def quiesced(self, server_id: str) -> Iterator[None]:
        """Hold a running guest still (QMP `stop` drains and flushes its I/O)."""
        with self._lock(server_id):
            monitor = self._monitor_of_running(server_id)
            if monitor is None:
                yield
                return
            with monitor:
                was = monitor.execute("query-status").get("status")
                monitor.execute("stop")
                try:
                    yield
                finally:
                    if was == "running":
                        monitor.execute("cont")

    def adopt(self) -> dict[str, GuestStatus]:
        """After a restart of kumo: the guests still running on this host, by server id.

        Guests whose QEMU is gone are marked SHUTOFF (the host may have rebooted).
        """
        found: dict[str, GuestStatus] = {}
        if not self.instances_path.is_dir():
            return found
        for folder in sorted(self.instances_path.iterdir()):
            if not folder.is_dir() or folder.name.startswith(("_", ".")):
                continue
            server_id = folder.name
            if not (folder / INSTANCE_RECORD).exists():
                continue
            with self._lock(server_id):
                pid = self._pid_from_file(server_id)
                if pid is not None and qemu.is_our_qemu(pid, server_id):
                    self._procs.setdefault(server_id, qemu.QemuProcess(pid))
                    status = self.status(server_id)
                    if status.state is GuestState.RUNNING:
                        found[server_id] = status
                        log.info("adopted server %s (QEMU pid %s)", server_id, pid)
                    continue
                if self._procs.get(server_id) is None:
                    (folder / SHUTOFF_MARKER).touch()
                    (folder / qemu.PID_FILE).unlink(missing_ok=True)
        return found

    # -- background service ------------------------------------------------

    def cache_pass(self, *, dry_run: bool = False) -> list[object]:
        """One image cache manager pass now (what `kumo cache clean` runs)."""
        return list(run_pass(self.cache, self.instances_path, self.settings.image_cache,
                             dry_run=dry_run))

    async def start(self) -> None:
        """Adopt running guests, then run the cache manager every `manager_interval`."""
        adopted = await asyncio.to_thread(self.adopt)
        log.info("hypervisor: %d running guest(s) adopted", len(adopted))
        interval = self.settings.image_cache.manager_interval
        if interval >= 0:
            self._task = asyncio.create_task(every(
                interval or 60, self.cache_pass, log, "image cache manager pass failed"))

    async def stop(self) -> None:
        """Stop the cache manager. Guests keep running (adopted on the next start)."""
        await cancel(self._task)
        self._task = None


def build_hypervisor(runtime: Runtime) -> LocalHypervisor:
    """The host's hypervisor for `kumo up`, reading images from this process's image service."""
    from kumo.hypervisor.fetcher import LocalImageFetcher

    return LocalHypervisor(runtime.settings, LocalImageFetcher(runtime))
