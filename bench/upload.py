"""Upload benchmark: 1 GiB through `PUT /image/v2/images/{id}/file` against `sha512sum`.

Starts a real `kumo up` and Debian's nginx on loopback with a throw-away directory.
Each round uploads a file of pseudo-random bytes with a sized PUT (the client sends
with sendfile(2), so the figure measures the server) and runs `sha512sum` on the
same file, the order alternating from round to round; then it downloads the fresh
image once (the first download, as a compute node does right after an upload) and
has nginx serve the same bytes. Prints per round, and the median and minimum of the
per-round ratios: upload / sha512sum (goal <= 1.15) and first download / nginx
(goal <= 1.2).

Usage: .venv/bin/python bench/upload.py [--size-mib 1024] [--rounds 6] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

BLOCK = 8 * 1024 * 1024


def make_file(path: Path, size: int) -> None:
    """Pseudo-random bytes (a fresh urandom block per 8 MiB), never zeros."""
    with open(path, "wb") as out:
        left = size
        while left:
            block = os.urandom(min(BLOCK, left))
            out.write(block)
            left -= len(block)


def start_kumo(data_dir: Path) -> tuple[subprocess.Popen[str], str, str, Path]:
    kumo = Path(sys.executable).with_name("kumo")
    log = data_dir.parent / "kumo.log"
    data_dir.mkdir(parents=True, exist_ok=True)
    # Benchmarks need no guest networks: user-mode networking builds nothing on the host.
    (data_dir / "kumo.conf").write_text("[network]\ndriver = user\n")
    env = dict(os.environ, HOME=str(data_dir.parent), PYTHONUNBUFFERED="1")
    out = open(log, "w")  # noqa: SIM115 - the child writes to it until it stops
    proc = subprocess.Popen(
        [
            str(kumo),
            "up",
            "--data-dir",
            str(data_dir),
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-user-config",
        ],
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        text = log.read_text()
        url = re.search(r"kumo is up at (\S+)", text)
        password = re.search(r"password (\S+)", text)
        if url and password:
            return proc, url.group(1), password.group(1), log
        if proc.poll() is not None:
            raise SystemExit(f"kumo up exited:\n{text}")
        time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"kumo up did not start:\n{log.read_text()}")


def request(
    url: str, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """A tiny HTTP/1.1 client (one request per connection)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        head = [
            f"{method} {parts.path}{path} HTTP/1.1",
            f"Host: {parts.netloc}",
            f"Content-Length: {len(body)}",
            "Connection: close",
        ]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        return read_response(sock)


def read_response(sock: socket.socket, sink: bool = False) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    length = int(headers.get("content-length", "0"))
    if sink:
        received = len(rest)
        buffer = bytearray(BLOCK)
        while received < length:
            got = sock.recv_into(buffer)
            if not got:
                break
            received += got
        return status, headers, str(received).encode()
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, headers, rest


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (and its reaped children) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(x) for x in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def upload(url: str, token: str, image_id: str, path: Path) -> float:
    parts = urlsplit(url)
    size = path.stat().st_size
    with socket.create_connection((parts.hostname, parts.port)) as sock, open(path, "rb") as f:
        head = (
            f"PUT {parts.path}/image/v2/images/{image_id}/file HTTP/1.1\r\n"
            f"Host: {parts.netloc}\r\nX-Auth-Token: {token}\r\n"
            "Content-Type: application/octet-stream\r\n"
            f"Content-Length: {size}\r\nConnection: close\r\n\r\n"
        ).encode()
        started = time.perf_counter()
        sock.sendall(head)
        sock.sendfile(f)
        status, _, body = read_response(sock)
        elapsed = time.perf_counter() - started
    if status != 204:
        raise SystemExit(f"upload failed: {status} {body[:500]!r}")
    return elapsed


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_nginx(work: Path) -> tuple[subprocess.Popen[bytes], str]:
    """Debian's nginx on loopback serving `work` (sendfile on, as it ships)."""
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        raise SystemExit("nginx is not installed: apt-get install nginx-light (make bench does)")
    port = free_port()
    conf = work / "nginx.conf"
    conf.write_text(
        f"daemon off; user root; worker_processes 1; pid {work}/nginx.pid;\n"
        f"error_log {work}/nginx-error.log;\nevents {{}}\n"
        f"http {{ access_log off; sendfile on; server {{ listen 127.0.0.1:{port}; "
        f"root {work}; }} }}\n"
    )
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(work)])
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc, f"http://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("nginx did not start")


def fetch(url: str, path: str, headers: dict[str, str] | None = None) -> tuple[float, int]:
    """GET `path` into a reused buffer (nothing kept); (seconds, bytes)."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {parts.netloc}\r\n{extra}"
                     "Connection: close\r\n\r\n".encode())
        started = time.perf_counter()
        status, _, received = read_response(sock, sink=True)
        elapsed = time.perf_counter() - started
    if status != 200:
        raise SystemExit(f"download of {path} failed: {status}")
    return elapsed, int(received)


def sha512sum(path: Path) -> float:
    started = time.perf_counter()
    subprocess.run(["sha512sum", str(path)], check=True, capture_output=True)
    return time.perf_counter() - started


def summary(label: str, ratios: list[float], goal: float) -> str:
    return (f"{label}: median {statistics.median(ratios):.2f}, minimum {min(ratios):.2f}, "
            f"maximum {max(ratios):.2f} over {len(ratios)} rounds (goal: median <= {goal})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kumo-bench-", dir="/var/tmp"))
    size = args.size_mib * 1024 * 1024
    data = work / "data.raw"
    proc = nginx = None
    try:
        print(f"writing {args.size_mib} MiB of pseudo-random data to {data} ...", flush=True)
        make_file(data, size)
        proc, url, password, _log = start_kumo(work / "kumo")
        nginx, nginx_url = start_nginx(work)
        auth = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": "admin", "domain": {"id": "default"}, "password": password}
                    },
                },
                "scope": {"project": {"name": "admin", "domain": {"id": "default"}}},
            }
        }
        status, headers, _ = request(
            url, "POST", "/identity/v3/auth/tokens", json.dumps(auth).encode(),
            {"Content-Type": "application/json"},
        )
        assert status == 201, status
        token = headers["x-subject-token"]
        auth_headers = {"X-Auth-Token": token}
        expected = hashlib.sha512()
        with open(data, "rb") as f:
            while block := f.read(BLOCK):
                expected.update(block)
        upload_ratios, download_ratios = [], []
        image_id = ""
        for number in range(1, args.rounds + 1):
            if image_id:
                request(url, "DELETE", f"/image/v2/images/{image_id}", headers=auth_headers)
            body = {"name": "bench", "disk_format": "raw", "container_format": "bare"}
            status, _, created = request(
                url, "POST", "/image/v2/images", json.dumps(body).encode(),
                {"Content-Type": "application/json", **auth_headers},
            )
            assert status == 201, created
            image_id = json.loads(created)["id"]
            # Same file, same page cache; the order alternates so neither always goes first.
            cpu_before = cpu_seconds(proc.pid)
            if number % 2:
                sha_time = sha512sum(data)
                up_time = upload(url, token, image_id, data)
            else:
                up_time = upload(url, token, image_id, data)
                sha_time = sha512sum(data)
            up_cpu = cpu_seconds(proc.pid) - cpu_before
            # The first download of the fresh image, then nginx serving the same bytes.
            first, got = fetch(url, f"{urlsplit(url).path}/image/v2/images/{image_id}/file",
                               auth_headers)
            assert got == size, got
            served, got = fetch(nginx_url, "/data.raw")
            assert got == size, got
            # A second kumo download (surely from memory): tells the cache from the CPU.
            again, _ = fetch(url, f"{urlsplit(url).path}/image/v2/images/{image_id}/file",
                             auth_headers)
            upload_ratios.append(up_time / sha_time)
            download_ratios.append(first / served)
            print(
                f"round {number}: upload {up_time:.2f} s, sha512sum {sha_time:.2f} s, ratio "
                f"{up_time / sha_time:.2f} (kumo CPU {up_cpu:.2f} s) | first download "
                f"{first:.2f} s, nginx {served:.2f} s, ratio {first / served:.2f} "
                f"(second download {again:.2f} s)",
                flush=True,
            )
            status, _, shown = request(url, "GET", f"/image/v2/images/{image_id}",
                                       headers=auth_headers)
            image = json.loads(shown)
            assert image["status"] == "active" and image["size"] == size, image
            assert image["os_hash_value"] == expected.hexdigest(), "sha512 mismatch"
        print(summary("upload / sha512sum", upload_ratios, 1.15))
        print(summary("first download / nginx", download_ratios, 1.2))
    finally:
        for child in (nginx, proc):
            if child is not None:
                child.send_signal(signal.SIGTERM)
                try:
                    child.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    child.kill()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
