"""Time `spawn` -> SSH banner for the tiny image through kumo's hypervisor, and the same
image booted by a plain `qemu-system-x86_64` command (same accelerator, memory, vCPUs,
a qcow2 overlay on the same cached base, the same metadata stub), in one run.

    .venv/bin/python bench/boot.py [--rounds N] [--image tiny.qcow2]

Prints both times per round, their medians and the ratio (goal: kumo adds <= 20 %).
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import socket
import socketserver
import statistics
import subprocess
import tempfile
import threading
import time
import uuid
from pathlib import Path

from kumo.config import Settings
from kumo.diskformat import qemuimg
from kumo.hypervisor.driver import GuestSpec, PortForward
from kumo.hypervisor.fetcher import FetchedImage
from kumo.hypervisor.local import LocalHypervisor

MEMORY_MB = 256
VCPUS = 1
TIMEOUT = 300.0


class FileFetcher:
    """Serves one local image file as image "bench"."""

    def __init__(self, path: Path, disk_format: str) -> None:
        self.path, self.disk_format = path, disk_format

    def fetch(self, image_id: str, dest_partial: Path) -> FetchedImage:
        shutil.copyfile(self.path, dest_partial)
        md5, sha = hashlib.md5(), hashlib.sha512()
        with self.path.open("rb") as data:
            while chunk := data.read(1 << 20):
                md5.update(chunk)
                sha.update(chunk)
        return FetchedImage(self.disk_format, self.path.stat().st_size, md5.hexdigest(),
                            sha.hexdigest())


class MetadataStub(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path) -> None:
        super().__init__(str(path), _Handler)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline().decode(errors="replace")
        while self.rfile.readline().strip():
            pass
        found = "instance-id" in line
        body = b"bench" if found else b"not found"
        status = "200 OK" if found else "404 Not Found"
        self.wfile.write(f"HTTP/1.0 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                         + body)


def wait_banner(port: int, started: float) -> float:
    while time.monotonic() - started < TIMEOUT:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as conn:
                # QEMU's user network accepts at once and only then tries the guest: a
                # long wait here would round every boot up to the next multiple of it.
                conn.settimeout(0.5)
                if conn.recv(8).startswith(b"SSH-"):
                    return time.monotonic() - started
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit(f"no SSH banner on port {port} within {TIMEOUT:.0f} s")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def time_kumo(hv: LocalHypervisor, md_socket: Path) -> float:
    spec = GuestSpec(server_id=str(uuid.uuid4()), name="bench", image_id="bench",
                     vcpus=VCPUS, memory_mb=MEMORY_MB, root_gb=1,
                     forwards=(PortForward("tcp", 22),), metadata_socket=md_socket)
    started = time.monotonic()
    status = hv.spawn(spec)
    try:
        return wait_banner(status.host_ports["tcp/22"], started)
    finally:
        hv.destroy(spec.server_id)


def time_plain(hv: LocalHypervisor, base: Path, base_format: str, md_socket: Path,
               work: Path) -> float:
    return plain_boot(base, base_format, work, md_socket, hv.accel.choose().qemu_args(),
                      MEMORY_MB, VCPUS)


def plain_boot(base: Path, base_format: str, work: Path, md_socket: Path, accel: list[str],
               memory_mb: int, vcpus: int, linger: float = 0) -> float:
    """Boot `base` with one plain qemu command on a fresh overlay; seconds to SSH banner.

    The guest runs `linger` seconds longer (its serial log in work/plain.log catches up).
    """
    overlay = work / "plain.qcow2"
    port = free_port()
    args = [
        "qemu-system-x86_64", *accel, "-m", str(memory_mb), "-smp", str(vcpus),
        "-nodefaults", "-display", "none", "-serial", f"file:{work / 'plain.log'}",
        "-drive", f"file={overlay},if=virtio,format=qcow2",
        "-netdev", "user,id=n0,net=169.254.0.0/16,restrict=on,"
        f"guestfwd=tcp:169.254.169.254:80-cmd:socat - UNIX-CONNECT:{md_socket},"
        f"hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device", "virtio-net-pci,netdev=n0",
        # kumo gives guests virtio-rng (dropbear's host keys need entropy early); the
        # plain command gets it too, so the ratio measures kumo, not the device set.
        "-device", "virtio-rng-pci",
    ]
    started = time.monotonic()
    qemuimg.create_overlay(base, base_format, overlay, 1024**3)  # like kumo's spawn does
    process = subprocess.Popen(args, stdin=subprocess.DEVNULL)
    try:
        seconds = wait_banner(port, started)
        time.sleep(linger)
        return seconds
    finally:
        process.kill()
        process.wait()
        overlay.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--image", type=Path, help="a tiny qcow2 (default: build/cache one)")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kumo-bench-", dir="/tmp") as tmp:
        work = Path(tmp)
        image = options.image
        if image is None:
            from kumo.imagebuild import builder_for

            image = work / "tiny.qcow2"
            builder_for("tiny")(image)
        hv = LocalHypervisor(Settings(data_dir=work / "data"), FileFetcher(image, "qcow2"))
        base = hv.cache.ensure_base("bench")  # a cached base, as the goal says
        md_socket = work / "md.sock"
        stub = MetadataStub(md_socket)
        threading.Thread(target=stub.serve_forever, daemon=True).start()
        kumo_times, plain_times = [], []
        try:
            for n in range(options.rounds):
                plain_times.append(time_plain(hv, base.path, base.format, md_socket, work))
                kumo_times.append(time_kumo(hv, md_socket))
                print(f"round {n + 1}: plain qemu {plain_times[-1]:.2f} s, "
                      f"kumo {kumo_times[-1]:.2f} s", flush=True)
        finally:
            stub.shutdown()
            stub.server_close()
        accel = hv.accel.choose()
        plain, kumo = statistics.median(plain_times), statistics.median(kumo_times)
        print(f"accelerator: {accel.name} ({accel.reason})")
        print(f"spawn -> SSH banner, median of {options.rounds}: plain qemu {plain:.2f} s, "
              f"kumo {kumo:.2f} s, ratio {kumo / plain:.2f} (goal <= 1.20)")


if __name__ == "__main__":
    main()
