"""Time `POST /servers` -> SSH banner through kumo's whole path, against plain QEMU.

kumo's path is what `openstack server create` does: the Nova API, the compute
service, the metadata channel, the hypervisor (a qcow2 overlay on the cached `_base`
file) and QEMU; the clock stops when the server's forwarded SSH port (`kumo:ssh`)
answers with a banner. The plain run boots the same base file with one
`qemu-system-x86_64` command (same accelerator, memory and vCPUs as m1.tiny).

    .venv/bin/python bench/server_create.py [--rounds N] [--image tiny.qcow2]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from boot import MetadataStub, plain_boot, wait_banner

from kumo.config import Settings
from kumo.hypervisor.accel import AccelChooser


def start_kumo(data: Path) -> tuple[subprocess.Popen[bytes], str]:
    kumo = Path(sys.executable).with_name("kumo")
    log = data.parent / "kumo.log"
    process = subprocess.Popen(
        [str(kumo), "up", "--data-dir", str(data), "--port", "0", "--no-user-config"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT,
        env=dict(os.environ, HOME=str(data.parent)),
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        found = re.search(r"kumo is up at (\S+)", log.read_text(errors="replace"))
        if found:
            return process, found.group(1)
        time.sleep(0.1)
    process.kill()
    raise SystemExit(f"kumo up did not start:\n{log.read_text()}")


def session(url: str, password: str) -> httpx.Client:
    auth = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    response = httpx.post(f"{url}/identity/v3/auth/tokens", json=auth)
    response.raise_for_status()
    return httpx.Client(base_url=url, timeout=60,
                        headers={"X-Auth-Token": response.headers["X-Subject-Token"]})


def prepare(api: httpx.Client, image: Path) -> str:
    """Upload the image and allow tcp/22; returns the image id."""
    made = api.post("/image/v2/images", json={
        "name": "bench-tiny", "disk_format": "qcow2", "container_format": "bare"})
    made.raise_for_status()
    image_id = str(made.json()["id"])
    with image.open("rb") as data:
        api.put(f"/image/v2/images/{image_id}/file", content=data,
                headers={"Content-Type": "application/octet-stream"}).raise_for_status()
    groups = api.get("/network/v2.0/security-groups", params={"name": "default"}).json()
    api.post("/network/v2.0/security-group-rules", json={"security_group_rule": {
        "security_group_id": groups["security_groups"][0]["id"], "direction": "ingress",
        "ethertype": "IPv4", "protocol": "tcp", "port_range_min": 22,
        "port_range_max": 22}}).raise_for_status()
    return image_id


def time_server_create(api: httpx.Client, image_id: str, name: str) -> float:
    started = time.monotonic()
    made = api.post("/compute/v2.1/servers", json={"server": {
        "name": name, "imageRef": image_id, "flavorRef": "1"}})
    made.raise_for_status()
    server_id = made.json()["server"]["id"]
    try:
        while time.monotonic() - started < 300:
            server = api.get(f"/compute/v2.1/servers/{server_id}").json()["server"]
            if server["status"] == "ERROR":
                raise SystemExit(f"server went to ERROR: {server.get('fault')}")
            ssh = server.get("metadata", {}).get("kumo:ssh")
            if ssh:
                return wait_banner(int(ssh.rsplit(":", 1)[1]), started)
            time.sleep(0.02)
        raise SystemExit("the server got no SSH forward within 300 s")
    finally:
        api.delete(f"/compute/v2.1/servers/{server_id}")
        while api.get(f"/compute/v2.1/servers/{server_id}").status_code != 404:
            time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--image", type=Path, help="a tiny qcow2 (default: build/cache one)")
    options = parser.parse_args()
    if options.image is None:
        from kumo.imagebuild.tiny import cached_image

        options.image = cached_image()
    with tempfile.TemporaryDirectory(prefix="kumo-bench-", dir="/tmp") as tmp:
        work = Path(tmp)
        data = work / "data"
        process, url = start_kumo(data)
        try:
            api = session(url, (data / "admin-password").read_text().strip())
            image_id = prepare(api, options.image)
            time_server_create(api, image_id, "warm-up")  # fetches the base once
            base = data / "instances" / "_base" / hashlib.sha1(image_id.encode()).hexdigest()
            # force_raw_images (the default) leaves a raw base; else the image's qcow2.
            fmt = "qcow2" if base.read_bytes()[:4] == b"QFI\xfb" else "raw"
            md_socket = work / "md.sock"
            stub = MetadataStub(md_socket)
            threading.Thread(target=stub.serve_forever, daemon=True).start()
            accel = AccelChooser(Settings().compute.virt_type,
                                 data / "run" / "accel.json").choose()
            kumo_times, plain_times = [], []
            for n in range(options.rounds):
                plain_times.append(plain_boot(base, fmt, work, md_socket, accel.qemu_args(),
                                              512, 1))  # m1.tiny
                kumo_times.append(time_server_create(api, image_id, f"bench-{n}"))
                print(f"round {n + 1}: plain qemu {plain_times[-1]:.2f} s, "
                      f"kumo server create {kumo_times[-1]:.2f} s", flush=True)
            stub.shutdown()
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=30)
    plain, kumo = statistics.median(plain_times), statistics.median(kumo_times)
    print(f"accelerator: {accel.name}")
    print(f"POST /servers -> SSH banner, median of {options.rounds}: plain qemu {plain:.2f} s, "
          f"kumo {kumo:.2f} s, ratio {kumo / plain:.2f} (goal <= 1.20)")


if __name__ == "__main__":
    main()
