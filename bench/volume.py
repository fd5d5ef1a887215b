"""Volumes, timed against their baselines in the same run, rounds interleaved (A B A B):

1. Volume from image: `POST /volume/v3/volumes {imageRef}` until the volume is
   `available` (kumo in-process: the real API, volume service and qcow2 driver), against
   `qemu-img convert -f <fmt> -O qcow2` of the same stored image file.
2. Attach -> device visible in the guest: `LocalHypervisor.attach_volume` (kumo's QMP
   hot-plug: free root port from QOM, blockdev-add x2, device_add) until a running tiny
   guest prints the new disk, against the same three QMP commands sent by hand to the
   same guest. Each round detaches again (device_del, DEVICE_DELETED, blockdev-del).

    .venv/bin/python bench/volume.py [--rounds N] [--image FILE]

Prints each round, then per metric the medians, and the median and minimum of the
per-round ratios (kumo / baseline).
"""

from __future__ import annotations

import argparse
import shutil
import socketserver
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from boot import FileFetcher  # bench/boot.py

from kumo.config import Settings
from kumo.diskformat import qemuimg
from kumo.hypervisor import blockdev
from kumo.hypervisor.driver import GuestSpec, VolumeDisk
from kumo.hypervisor.local import LocalHypervisor

# The guest prints its extra disks whenever they change, polling every 10 ms.
WATCHER = (
    b"#!/bin/sh\n"
    b"( seen=start; while :; do now=; for d in /sys/block/vd[b-z]; do [ -e $d ] && "
    b"now=\"$now $(cat $d/serial)\"; done; "
    b"[ \"$now\" != \"$seen\" ] && echo \"disks:$now.\" && seen=$now; usleep 10000; done )"
    b" > /dev/console 2>&1 < /dev/null &\n"
)


class MetadataStub(socketserver.ThreadingUnixStreamServer):
    """Answers the tiny guest's metadata requests: an instance id and the watcher."""

    daemon_threads = True

    def __init__(self, path: Path) -> None:
        super().__init__(str(path), _Handler)


class _Handler(socketserver.StreamRequestHandler):
    def handle(self) -> None:
        line = self.rfile.readline().decode(errors="replace")
        while self.rfile.readline().strip():
            pass
        body, status = b"not found", "404 Not Found"
        if "instance-id" in line:
            body, status = b"bench", "200 OK"
        elif "user-data" in line:
            body, status = WATCHER, "200 OK"
        self.wfile.write(f"HTTP/1.0 {status}\r\nContent-Length: {len(body)}\r\n\r\n".encode()
                         + body)


def ratios(kumo: list[float], base: list[float]) -> str:
    per_round = [k / b for k, b in zip(kumo, base, strict=True)]
    return (f"median kumo {statistics.median(kumo):.3f}, baseline {statistics.median(base):.3f}"
            f"; ratio median {statistics.median(per_round):.2f}, min {min(per_round):.2f}")


# -- 1. volume from image ---------------------------------------------------------------


def volume_from_image(image: Path, disk_format: str, rounds: int, work: Path) -> None:
    from starlette.testclient import TestClient

    from kumo.api.app import create_app
    from kumo.server import prepare
    from kumo.volume.service import volume_service_of

    settings = Settings(data_dir=work / "data", admin_password="bench")
    settings.host, settings.port, settings.public_url = "testserver", 80, "http://testserver"
    settings.network.driver = "user"  # no namespaces or bridges on the host for a bench
    runtime, _ = prepare(settings)
    service = volume_service_of(runtime)
    kumo_times: list[float] = []
    base_times: list[float] = []
    with TestClient(create_app(runtime), base_url="http://testserver") as api:
        token = api.post("/identity/v3/auth/tokens", json={"auth": {
            "identity": {"methods": ["password"], "password": {"user": {
                "name": "admin", "domain": {"id": "default"}, "password": "bench"}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
        ).headers["X-Subject-Token"]
        headers = {"X-Auth-Token": token}
        made = api.post("/image/v2/images", headers=headers, json={
            "name": "bench", "disk_format": disk_format, "container_format": "bare"}).json()
        with image.open("rb") as data:
            response = api.put(f"/image/v2/images/{made['id']}/file", content=data, headers={
                **headers, "Content-Type": "application/octet-stream"})
        assert response.status_code == 204, response.text
        shown = api.get(f"/image/v2/images/{made['id']}", headers=headers).json()
        size_gb = max(1, -(-int(shown["virtual_size"]) // 1024**3))
        location = runtime.store.locations()[0]
        with runtime.store.local_file(location, work / "scratch") as stored:
            rounds_of_volume_from_image(api, headers, service, made["id"], size_gb,
                                        stored, disk_format, rounds, work, kumo_times,
                                        base_times)
    runtime.engine.dispose()
    print(f"volume from image ({image.name}, {shown['size'] // 1024**2} MiB {disk_format}, "
          f"{size_gb} GB volume), seconds: {ratios(kumo_times, base_times)}")


def rounds_of_volume_from_image(api: Any, headers: dict[str, str], service: Any,
                                image_id: str, size_gb: int, stored: Path, disk_format: str,
                                rounds: int, work: Path, kumo_times: list[float],
                                base_times: list[float]) -> None:
    for n in range(rounds):
        started = time.monotonic()
        volume = api.post("/volume/v3/volumes", headers=headers, json={"volume": {
            "size": size_gb, "imageRef": image_id}}).json()["volume"]
        service.wait_idle()
        while api.get(f"/volume/v3/volumes/{volume['id']}", headers=headers).json()[
                "volume"]["status"] != "available":
            time.sleep(0.01)
        kumo_times.append(time.monotonic() - started)
        api.delete(f"/volume/v3/volumes/{volume['id']}", headers=headers)
        service.wait_idle()
        out = work / "plain.qcow2"
        started = time.monotonic()
        subprocess.run(["qemu-img", "convert", "-f", disk_format, "-O", "qcow2",
                        str(stored), str(out)], check=True)
        base_times.append(time.monotonic() - started)
        out.unlink()
        print(f"round {n + 1}: volume from image {kumo_times[-1]:.3f} s, "
              f"qemu-img convert {base_times[-1]:.3f} s", flush=True)


# -- 2. attach -> visible ---------------------------------------------------------------


class Console:
    """Follows the guest's console log for the watcher's `disks:` lines."""

    def __init__(self, path: Path) -> None:
        self.path, self.offset, self.last = path, 0, ""

    def wait(self, wanted: str, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.path.open("rb") as log:
                log.seek(self.offset)
                data = log.read()
            self.offset += len(data)
            for line in data.decode(errors="replace").splitlines():
                if line.startswith("disks:"):
                    self.last = line.strip()
            if self.last == wanted:
                return time.monotonic()
            time.sleep(0.002)
        raise SystemExit(f"the guest never showed {wanted!r} (last: {self.last!r})")


def attach_rounds(image: Path, rounds: int, work: Path) -> None:
    settings = Settings(data_dir=work / "hv")
    hv = LocalHypervisor(settings, FileFetcher(image, "qcow2"))
    settings.run_dir.mkdir(parents=True, exist_ok=True)
    md_socket = settings.run_dir / "md.sock"
    stub = MetadataStub(md_socket)
    threading.Thread(target=stub.serve_forever, daemon=True).start()
    server_id = str(uuid.uuid4())
    spec = GuestSpec(server_id=server_id, name="bench", image_id="bench", vcpus=1,
                     memory_mb=256, root_gb=1, metadata_socket=md_socket)
    kumo_ms: list[float] = []
    base_ms: list[float] = []
    try:
        hv.spawn(spec)
        console = Console(hv.folder(server_id) / "console.log")
        console.wait("disks:.", timeout=600)
        path = work / "volume.qcow2"
        qemuimg.create(path, "qcow2", 1024**3)
        for n in range(rounds):
            disk = VolumeDisk(str(uuid.uuid4()), {"driver": "file", "filename": str(path)},
                              "qcow2")
            started = time.monotonic()
            hv.attach_volume(server_id, disk)
            kumo_ms.append((console.wait(f"disks: {disk.volume_id[:20]}.") - started) * 1000)
            hv.detach_volume(server_id, disk.volume_id)
            console.wait("disks:.")
            base_ms.append(by_hand(hv, server_id, path, console) * 1000)
            print(f"round {n + 1}: attach -> visible: kumo {kumo_ms[-1]:.0f} ms, "
                  f"QMP by hand {base_ms[-1]:.0f} ms", flush=True)
    finally:
        hv.destroy(server_id)
        stub.shutdown()
        stub.server_close()
    print(f"attach -> device visible in the guest, ms: "
          f"{ratios(kumo_ms, base_ms).replace('.000', '')}")


def by_hand(hv: LocalHypervisor, server_id: str, path: Path, console: Console) -> float:
    """The same hot-plug as three QMP commands on a port known to be free."""
    volume_id = str(uuid.uuid4())
    nodes: dict[str, Any] = {"driver": "file", "filename": str(path), "node-name": "bhf"}
    with hv._qmp(server_id, timeout=10) as monitor:
        started = time.monotonic()
        monitor.execute("blockdev-add", nodes)
        monitor.execute("blockdev-add", {"driver": "qcow2", "file": "bhf", "node-name": "bh"})
        monitor.execute("device_add", {"driver": "virtio-blk-pci", "id": "byhand",
                                       "drive": "bh", "bus": f"{blockdev.ROOT_PORT}0",
                                       "serial": volume_id[:20]})
        seen = console.wait(f"disks: {volume_id[:20]}.") - started
        monitor.execute("device_del", {"id": "byhand"})
        while not any(e.get("event") == "DEVICE_DELETED" for e in monitor.events):
            monitor.wait_event(1.0)
        monitor.execute("blockdev-del", {"node-name": "bh"})
        monitor.execute("blockdev-del", {"node-name": "bhf"})
    console.wait("disks:.")
    return seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--image", type=Path,
                        help="the image a volume is made from (default: the cached Debian "
                             "image if built, else the tiny one)")
    parser.add_argument("--disk-format", default="qcow2", help="the image's format (pinned)")
    parser.add_argument("--skip-attach", action="store_true")
    options = parser.parse_args()
    from kumo.imagebuild import cache, tiny

    tiny_image = tiny.cached_image()
    image = options.image
    if image is None:
        debian_builds = sorted(cache.default_root().glob("debian-*.qcow2"))
        image = debian_builds[-1] if debian_builds else tiny_image
    with tempfile.TemporaryDirectory(prefix="kumo-bench-", dir="/tmp") as tmp:
        work = Path(tmp)
        volume_from_image(image, options.disk_format, options.rounds, work)
        if not options.skip_attach:
            attach_rounds(tiny_image, options.rounds, work)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
