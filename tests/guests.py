"""Guests for tests: the built images (fixtures) and a small QEMU launcher.

- `tiny_image` (session): the tiny image's qcow2 in ~/.cache/kumo/images, built once
  (from nothing when the cache is empty, as in CI). Treat it as read-only: boot it
  through `boot_guest`, which puts a qcow2 overlay on top.
- `boot_guest(image, workdir, ...)`: QEMU with user networking the way kumo wires it
  (`restrict=on`, net 169.254.0.0/16, the metadata address forwarded to a unix
  socket, SSH forwarded from a free 127.0.0.1 port); returns a `Guest` to wait on the
  serial log, SSH in, power down.
- `MetadataEndpoint`: a test metadata service on a unix socket (EC2 paths you fill in),
  recording every request the guest makes.
- `TapNic`: instead of user networking, a tap that QEMU opens inside a network
  namespace the test set up (QEMU runs in it; SSH goes to the guest's own address).

This is only for testing images; kumo's real QEMU driver lives in kumo.hypervisor.
Accelerator: software emulation (`tcg`) unless KUMO_TEST_ACCEL=kvm is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import socket
import socketserver
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

QEMU = "qemu-system-x86_64"
SSH_OPTIONS = [
    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
    "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR",
]


# --- the images --------------------------------------------------------------------

@pytest.fixture(scope="session")
def tiny_image() -> Path:
    """The cached tiny image (built on first use; ~20 s from nothing)."""
    from kumo.imagebuild.tiny import cached_image

    return cached_image()


@pytest.fixture(scope="session")
def debian_image() -> Path:
    """The cached Debian 12 cloud image (built on first use; a few minutes from nothing)."""
    from kumo.imagebuild.debian import cached_image

    return cached_image()


# --- a test metadata service -------------------------------------------------------

class _Handler(BaseHTTPRequestHandler):
    server: _UnixHTTPServer

    def do_GET(self) -> None:
        self.server.requests.append(self.path)
        body = self.server.routes.get(self.path.rstrip("/") or "/")
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "guest"


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    routes: dict[str, bytes]
    requests: list[str]


@dataclass
class MetadataEndpoint:
    """An HTTP server on a unix socket, answering `routes` (path -> body)."""

    socket_path: Path
    routes: dict[str, bytes] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    _server: _UnixHTTPServer | None = None

    @classmethod
    def ec2(cls, socket_path: Path, *, instance_id: str, public_key: str, hostname: str,
            user_data: bytes | None = None) -> MetadataEndpoint:
        routes = {
            "/latest/meta-data/instance-id": instance_id.encode(),
            "/latest/meta-data/hostname": hostname.encode(),
            "/latest/meta-data/public-keys": b"0=test-key",
            "/latest/meta-data/public-keys/0/openssh-key": public_key.encode(),
        }
        if user_data is not None:
            routes["/latest/user-data"] = user_data
        return cls(socket_path, routes)

    def start(self) -> None:
        server = _UnixHTTPServer(str(self.socket_path), _Handler)
        server.routes, server.requests = self.routes, self.requests
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def relay_command(self) -> str:
        """The guestfwd `cmd:` QEMU runs per connection: stdin/stdout to our socket."""
        return f"socat - UNIX-CONNECT:{self.socket_path}"


# --- QEMU ----------------------------------------------------------------------------

@dataclass(frozen=True)
class TapNic:
    """A tap device in a network namespace, for QEMU (`-netdev tap`) instead of user net."""

    namespace: str
    ifname: str
    mac: str
    address: str  # the guest's fixed IP (SSH goes there, from inside the namespace)

    def netns_exec(self) -> list[str]:
        return ["ip", "netns", "exec", self.namespace]


class Qmp:
    """Just enough QMP over a unix socket for tests (commands, no async events)."""

    def __init__(self, path: Path, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX)
                self.sock.connect(str(path))
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.sock.settimeout(timeout)
        self.reader = self.sock.makefile("rb")
        self.reader.readline()  # the greeting
        self.execute("qmp_capabilities")

    def execute(self, command: str, **arguments: Any) -> Any:
        message: dict[str, Any] = {"execute": command}
        if arguments:
            message["arguments"] = arguments
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        while True:
            reply = json.loads(self.reader.readline())
            if "event" in reply:
                continue
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error']}")
            return reply.get("return")

    def close(self) -> None:
        self.reader.close()
        self.sock.close()


@dataclass
class Guest:
    process: subprocess.Popen[bytes]
    workdir: Path
    serial_log: Path
    qmp: Qmp
    ssh_port: int
    started: float  # time.monotonic() when QEMU was started
    ssh_host: str = "127.0.0.1"
    ssh_prefix: tuple[str, ...] = ()  # e.g. `ip netns exec NS` for a guest on a tap

    def console(self) -> str:
        return self.serial_log.read_text(errors="replace")

    def wait_for_console(self, text: str, timeout: float = 120) -> float:
        """Seconds after QEMU started when `text` appeared on the serial console."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if text in self.console():
                return time.monotonic() - self.started
            if self.process.poll() is not None:
                break
            time.sleep(0.1)
        raise AssertionError(f"{text!r} not on the console; it shows:\n{self.console()[-3000:]}")

    def ssh(self, key: Path, command: str, *, user: str = "tiny",
            timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*self.ssh_prefix, "ssh", "-i", str(key), "-p", str(self.ssh_port), *SSH_OPTIONS,
             f"{user}@{self.ssh_host}", command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )

    def wait_for_ssh(self, key: Path, *, user: str = "tiny", timeout: float = 120) -> float:
        """Seconds after QEMU started when `ssh ... true` first succeeded."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline and self.process.poll() is None:
            last = self.ssh(key, "true", user=user, timeout=15)
            if last.returncode == 0:
                return time.monotonic() - self.started
            time.sleep(0.5)
        raise AssertionError(f"no SSH login: {last and last.stderr}\n{self.console()[-3000:]}")

    def powerdown(self, timeout: float = 60) -> int:
        """ACPI power button; waits for QEMU to exit and returns its exit status."""
        self.qmp.execute("system_powerdown")
        return self.process.wait(timeout=timeout)

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(Exception):
                self.qmp.execute("quit")
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.qmp.close()


def accel_args() -> list[str]:
    if os.environ.get("KUMO_TEST_ACCEL") == "kvm":
        return ["-accel", "kvm", "-cpu", "host"]
    return ["-accel", "tcg,thread=multi", "-cpu", "max"]


def boot_guest(
    image: Path,
    workdir: Path,
    *,
    metadata: MetadataEndpoint | None = None,
    config_drive: Path | None = None,
    smbios: str | None = None,
    memory_mb: int = 256,
    netdev_extra: str = "",
    extra_args: Sequence[str] = (),
    nic: TapNic | None = None,
) -> Guest:
    """Start QEMU on a qcow2 overlay of `image` (qcow2); the caller must `stop()` it.

    With `nic`, QEMU runs inside its namespace on that tap (no user networking, no
    metadata relay: the namespace answers 169.254.169.254 itself).
    """
    if shutil.which(QEMU) is None:
        pytest.skip(f"{QEMU} is not installed (apt-get install qemu-system-x86)")
    workdir.mkdir(parents=True, exist_ok=True)
    overlay = workdir / "disk.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(image), "-F", "qcow2",
                    str(overlay)], check=True)
    serial_log, qmp_path = workdir / "serial.log", workdir / "qmp.sock"
    if nic is None:
        prefix: list[str] = []
        netdev = "user,id=n0,restrict=on,net=169.254.0.0/16,hostfwd=tcp:127.0.0.1:0-:22"
        if metadata is not None:
            netdev += f",guestfwd=tcp:169.254.169.254:80-cmd:{metadata.relay_command()}"
        device = "virtio-net-pci,netdev=n0"
    else:
        prefix = nic.netns_exec()  # `ip netns exec` execs QEMU: same PID
        netdev = f"tap,id=n0,ifname={nic.ifname},script=no,downscript=no"
        device = f"virtio-net-pci,netdev=n0,mac={nic.mac}"
    if netdev_extra:
        netdev += "," + netdev_extra
    args = [
        *prefix, QEMU, *accel_args(), "-m", str(memory_mb), "-smp", "1", "-display", "none",
        "-monitor", "none", "-serial", f"file:{serial_log}", "-no-reboot",
        "-qmp", f"unix:{qmp_path},server=on,wait=off",
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-netdev", netdev, "-device", device,
    ]
    if config_drive is not None:
        args += ["-drive", f"file={config_drive},media=cdrom,if=ide,readonly=on,format=raw"]
    if smbios:
        args += ["-smbios", smbios]
    args += list(extra_args)
    started = time.monotonic()
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL,
                               stderr=(workdir / "qemu.stderr").open("wb"))
    try:
        qmp = Qmp(qmp_path)
    except OSError:
        process.kill()
        stderr = (workdir / "qemu.stderr").read_text()
        raise AssertionError(f"QEMU did not start: {stderr}") from None
    if nic is not None:
        return Guest(process, workdir, serial_log, qmp, 22, started, nic.address,
                     tuple(nic.netns_exec()))
    usernet = qmp.execute("human-monitor-command", **{"command-line": "info usernet"})
    match = re.search(r"HOST_FORWARD\]\s+\d+\s+127\.0\.0\.1\s+(\d+)\s+\S+\s+22\b", usernet)
    if match is None:
        qmp.close()
        process.kill()
        raise AssertionError(f"no SSH forward in `info usernet`:\n{usernet}")
    return Guest(process, workdir, serial_log, qmp, int(match.group(1)), started)


@contextlib.contextmanager
def running_guest(image: Path, workdir: Path, **options: Any) -> Iterator[Guest]:
    """`boot_guest` that always stops QEMU at the end of the block."""
    guest = boot_guest(image, workdir, **options)
    try:
        yield guest
    finally:
        guest.stop()


def make_ssh_key(directory: Path) -> tuple[Path, str]:
    """A fresh ed25519 key pair: (private key file, public key line)."""
    key = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kumo-test",
                    "-f", str(key)], check=True)
    return key, (directory / "id_ed25519.pub").read_text().strip()
