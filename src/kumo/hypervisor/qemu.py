"""The one module that runs `qemu-system-x86_64`: its command line and its process.

QEMU runs with its working directory set to the guest's folder, so the monitor
socket, pid file and console log are named relatively (a unix socket path must
stay under 108 bytes whatever DATA is).
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kumo.errors import BadRequest, KumoError
from kumo.hypervisor import blockdev
from kumo.hypervisor.accel import Accel
from kumo.hypervisor.driver import GuestSpec, PortForward, VolumeDisk
from kumo.process import require

QEMU = "qemu-system-x86_64"
PACKAGE = "qemu-system-x86"
METADATA_ADDRESS = "169.254.169.254"
GUEST_NET = "169.254.0.0/16"
GUEST_MAC = "52:54:00:12:34:56"
VHOST_NET = "/dev/vhost-net"
# q35: volumes hot-plug onto PCIe root ports (pc's PCI bus has none). nova's
# `num_pcie_ports`: how many volumes a running server can take.
MACHINE = "q35"
DEFAULT_PCIE_PORTS = 8

# Names of the files in a guest's folder.
DISK = "disk"
RESCUE_DISK = "disk.rescue"
MEMORY_STATE = "memory.state"  # a suspended guest's RAM and devices (QEMU migration stream)
CONSOLE_LOG = "console.log"
QMP_SOCKET = "qmp.sock"
VNC_SOCKET = "vnc.sock"  # the VGA screen, relayed by kumo.console behind a token
SERIAL_SOCKET = "serial.sock"  # ttyS0 in and out, relayed by kumo.console too
PID_FILE = "pid"
STDERR_LOG = "qemu.log"


def mac_address(server_id: str) -> str:
    """The guest NIC's MAC: QEMU's default, as the compute and metadata parts announce it.

    Every guest has its own user-mode network, so one MAC for all cannot clash, and
    network_data.json (which cloud-init matches by MAC) stays right without coordination.
    """
    del server_id
    return GUEST_MAC


def _opt(value: str | Path) -> str:
    """A value inside a QEMU `-opt a=b,c=d` list: commas are doubled."""
    return str(value).replace(",", ",,")


def forward_rule(forward: PortForward) -> str:
    """`tcp:127.0.0.1:HOSTPORT-:GUESTPORT`, as hostfwd= and hostfwd_add take it."""
    if forward.protocol not in ("tcp", "udp"):
        raise BadRequest(f"cannot forward protocol {forward.protocol!r} (tcp or udp only)")
    for port in (forward.guest_port, forward.host_port):
        if not 0 <= port <= 65535:
            raise BadRequest(f"port {port} is out of range")
    return f"{forward.protocol}:127.0.0.1:{forward.host_port}-:{forward.guest_port}"


def netdev(spec: GuestSpec) -> str:
    """User networking on 169.254.0.0/16: metadata via a per-server relay, host forwards.

    `restrict=on` keeps the guest off every host address (the host's 127.0.0.1, kumo's
    APIs included); guestfwd and hostfwd still work through it.
    """
    if spec.allow_outbound:
        # QEMU 7.2's user networking without restrict=on maps the gateway (and any
        # 127.0.0.0/8 destination a guest routes) to the host's loopback; it has no
        # option to stop that (libslirp's disable_host_loopback is not exposed), so
        # outbound access is refused rather than exposing kumo's own APIs.
        raise BadRequest(
            "outbound guest traffic is not available: QEMU's user networking would also "
            "let the guest reach this host's 127.0.0.1 services (kumo's APIs included)"
        )
    parts = ["user", "id=n0", f"net={GUEST_NET}", "restrict=on"]
    if spec.metadata_socket is not None:
        relay = f"socat - UNIX-CONNECT:{shlex.quote(str(spec.metadata_socket))}"
        parts.append(f"guestfwd=tcp:{METADATA_ADDRESS}:80-cmd:{_opt(relay)}")
    parts += [f"hostfwd={forward_rule(forward)}" for forward in spec.forwards]
    return ",".join(parts)


def nic_args(spec: GuestSpec) -> list[str]:
    """The guest's NICs: taps on real networks, or one QEMU user-mode network.

    A tap is opened by name (the network part created it, persistent, in kumo's
    namespace, where QEMU runs); `host_mtu` also tells a virtio driver the MTU.
    """
    if spec.netns is None:
        return ["-netdev", netdev(spec),
                "-device", f"virtio-net-pci,netdev=n0,mac={mac_address(spec.server_id)}"]
    args: list[str] = []
    vhost = "on" if os.path.exists(VHOST_NET) else "off"
    for index, nic in enumerate(spec.nics):
        args += ["-netdev", f"tap,id=n{index},ifname={_opt(nic.tap)},script=no,downscript=no,"
                            f"vhost={vhost}",
                 "-device", f"virtio-net-pci,netdev=n{index},mac={nic.mac},host_mtu={nic.mtu}"]
    return args


def build_args(
    spec: GuestSpec,
    accel: Accel,
    *,
    disk_format: str,
    qemu: str = QEMU,
    rescue_format: str = "qcow2",
    incoming: bool = False,
    cdrom: Path | None = None,
    pcie_ports: int = DEFAULT_PCIE_PORTS,
    volume_ports: dict[str, str] | None = None,
) -> list[str]:
    """The full QEMU command line for `spec` (paths relative to the guest's folder)."""
    if spec.vcpus < 1 or spec.memory_mb < 16:
        raise BadRequest(f"a guest needs at least 1 vCPU and 16 MB (got {spec.vcpus}, "
                         f"{spec.memory_mb} MB)")
    uuid = spec.server_id
    smbios = (
        "type=1,manufacturer=OpenStack Foundation,product=OpenStack Nova,"
        f"serial={_opt(uuid)},uuid={_opt(uuid)}"
    )
    args = [
        qemu,
        "-name", f"guest={_opt(spec.name or uuid)}",
        "-uuid", uuid,
        "-machine", MACHINE,
        *accel.qemu_args(),
        "-m", str(spec.memory_mb),
        "-smp", str(spec.vcpus),
        "-no-user-config", "-nodefaults",
        "-display", "none",
        # The screen and the first serial port on unix sockets in the guest's folder
        # (never a TCP port): only kumo's console relay reaches them, behind a token.
        "-device", "VGA",
        "-vnc", f"unix:{VNC_SOCKET}",
        # The guest powering off leaves QEMU paused in "shutdown", so a QEMU that
        # disappears was always killed or crashed: status can tell the two apart.
        "-no-shutdown",
        "-smbios", smbios,
        # QEMU logs what the guest writes whether or not a viewer is connected;
        # logappend=on: the console log survives stop/start, as nova's console.log.
        "-chardev", f"socket,id=console,path={SERIAL_SOCKET},server=on,wait=off,"
                    f"logfile={CONSOLE_LOG},logappend=on",
        "-serial", "chardev:console",
        "-qmp", f"unix:{QMP_SOCKET},server=on,wait=off",
        "-pidfile", PID_FILE,
        *_disks(spec, disk_format, rescue_format, cdrom is not None),
        *nic_args(spec),
        "-device", "virtio-rng-pci",
    ]
    if cdrom is not None:
        # An ISO image is the CD-ROM and boots first, as under nova (the image is the
        # root device); what it installs on the blank disk boots from a snapshot.
        boot = 2 if spec.rescue_image_id is not None else 0
        args += [
            "-drive", f"file={_opt(cdrom)},if=none,id=cdrom,media=cdrom,readonly=on,format=raw",
            *cdrom_device("cdrom", bootindex=boot),
        ]
    if incoming:  # resume: QEMU waits for the saved state (`migrate-incoming`)
        args += ["-incoming", "defer"]
    if spec.config_drive is not None:
        args += [
            "-drive",
            f"file={_opt(spec.config_drive)},if=none,id=config,media=cdrom,readonly=on,format=raw",
            *cdrom_device("config"),
        ]
    return args + _volumes(spec, pcie_ports, volume_ports)


def cdrom_device(drive: str, bootindex: int | None = None) -> list[str]:
    """A CD-ROM on virtio-scsi: q35 has no IDE, and Debian's cloud kernels no AHCI driver
    (SeaBIOS boots from it too)."""
    boot = "" if bootindex is None else f",bootindex={bootindex}"
    return ["-device", f"virtio-scsi-pci,id=scsi-{drive}",
            "-device", f"scsi-cd,bus=scsi-{drive}.0,drive={drive}{boot}"]


def _volumes(spec: GuestSpec, pcie_ports: int, ports: dict[str, str] | None) -> list[str]:
    """Empty root ports for hot-plug, the attached volumes plugged into them.

    A volume goes back onto the port it had (`ports`, kept by the hypervisor), so the
    device layout is the same after a restart: a suspended guest's saved state loads
    only into the layout it was saved from.
    """
    if len(spec.volumes) > pcie_ports:
        raise BadRequest(f"server {spec.server_id} has {len(spec.volumes)} volumes attached "
                         f"but the host offers {pcie_ports} PCIe ports (num_pcie_ports)")
    args = blockdev.root_port_args(pcie_ports)
    layout = volume_layout(spec.volumes, pcie_ports, ports or {})
    for disk in spec.volumes:
        args += blockdev.command_line(disk, bus=layout[disk.volume_id])
    return args


def volume_layout(volumes: Sequence[VolumeDisk], pcie_ports: int,
                  ports: dict[str, str]) -> dict[str, str]:
    """Each volume's root port (by volume id): the one it had if still free, else the first
    free one."""
    free = [f"{blockdev.ROOT_PORT}{i}" for i in range(pcie_ports)]
    layout: dict[str, str] = {}
    for disk in volumes:
        port = ports.get(disk.volume_id)
        if port is not None and port in free:
            layout[disk.volume_id] = port
            free.remove(port)
    for disk in volumes:
        if disk.volume_id not in layout:
            layout[disk.volume_id] = free.pop(0)
    return layout


def _disks(spec: GuestSpec, disk_format: str, rescue_format: str,
           after_cd: bool = False) -> list[str]:
    """The root disk (local, or a volume); in rescue the rescue image's disk boots and the
    root disk is second. `after_cd`: an ISO image's CD-ROM boots first (see build_args)."""
    args: list[str] = []
    if spec.rescue_image_id is not None:
        args += ["-drive", f"file={RESCUE_DISK},if=none,id=rescue,format={rescue_format},"
                 "cache=writeback", "-device", "virtio-blk-pci,drive=rescue,bootindex=0"]
    index = 1 if spec.rescue_image_id is not None or after_cd else 0
    if spec.root_volume is not None:  # boot from volume: on pcie.0, never unplugged
        return args + blockdev.command_line(spec.root_volume, bus="pcie.0", bootindex=index)
    root = f"file={DISK},if=none,id=root,format={disk_format},cache=writeback,discard=unmap"
    return [*args, "-drive", root, "-device", f"virtio-blk-pci,drive=root,bootindex={index}"]


@dataclass
class QemuProcess:
    """A QEMU started by this kumo (`popen` set) or found running after a restart."""

    pid: int
    popen: subprocess.Popen[bytes] | None = None

    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None


def launch(args: Sequence[str], folder: Path, netns: str | None = None) -> QemuProcess:
    """Start QEMU in `folder`, its stderr appended to `folder/qemu.log`, in its own session.

    Its own session: a Ctrl-C or SIGTERM to kumo does not reach the guests, which keep
    running and are adopted when kumo starts again. With `netns`, QEMU runs in that
    network namespace (nsenter execs it, so the pid stays QEMU's), where its taps are.
    """
    binary = require(args[0], PACKAGE)
    argv = [binary, *args[1:]]
    if netns is not None:
        argv = [require("nsenter", "util-linux"), f"--net=/run/netns/{netns}", "--", *argv]
    with open(folder / STDERR_LOG, "ab") as stderr:
        popen = subprocess.Popen(
            argv,
            cwd=folder,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
    return QemuProcess(popen.pid, popen)


def version(qemu: str = QEMU) -> tuple[int, int, int]:
    """QEMU's version from `--version` (os-hypervisors shows it); zeros when unknown."""
    try:
        out = subprocess.run([require(qemu, PACKAGE), "--version"], capture_output=True,
                             text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.TimeoutExpired, KumoError):
        return (0, 0, 0)
    found = re.search(r"version (\d+)\.(\d+)\.(\d+)", out)
    return (int(found[1]), int(found[2]), int(found[3])) if found else (0, 0, 0)


def process_age(pid: int) -> float | None:
    """Seconds since process `pid` started (to clock-tick precision), None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    # the fields after the command name in parentheses (which may hold spaces); starttime
    # is the 22nd field of the whole line, the 20th after the name
    fields = stat[stat.rfind(")") + 2:].split()
    try:
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")
    except (IndexError, ValueError):
        return None
    return max(0.0, uptime - started)


def is_our_qemu(pid: int, server_id: str) -> bool:
    """Whether pid is alive and is QEMU running `server_id` (pids get reused)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    argv = raw.split(b"\0")
    if not argv or not os.path.basename(argv[0]).startswith(b"qemu-system"):
        return False
    try:
        return argv[argv.index(b"-uuid") + 1].decode() == server_id
    except (ValueError, IndexError):
        return False


_USERNET_LINE = re.compile(
    r"^\s*(TCP|UDP)\[HOST_FORWARD\]\s+\d+\s+(\S+)\s+(\d+)\s+(\S+)\s+(\d+)", re.MULTILINE
)


def parse_usernet(text: str) -> dict[str, int]:
    """`info usernet` -> {"tcp/22": host port} for the host forwards."""
    ports: dict[str, int] = {}
    for proto, _src, src_port, _dst, dst_port in _USERNET_LINE.findall(text):
        ports[f"{proto.lower()}/{dst_port}"] = int(src_port)
    return ports
