"""Metadata service benchmark: 50 clients over per-server unix sockets, as socat relays.

The service runs in its own process (as inside `kumo up`, on uvloop when installed)
with one channel per simulated server; this process plays the socat relays: every
request is a fresh unix connection (QEMU's guestfwd starts one socat per guest TCP
connection), sent on the client's own server socket.

Two phases:
1. open loop at --rate requests/s in total (default 1,000), spread over the clients;
   latency is measured from each request's *scheduled* start, so a stalled service
   is not hidden (no coordinated omission);
2. closed loop: every client as fast as it can, for the ceiling in requests/s.

    .venv/bin/python bench/metadata.py [--rate 1000] [--seconds 10] [--clients 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from kumo.metadata.instance import InstanceView, PublicKey
from kumo.metadata.service import MetadataService

# What cloud-init and the seeds' rc.local scripts fetch during a boot.
PATHS = (
    "/openstack/latest/meta_data.json",
    "/latest/meta-data/public-keys/0/openssh-key",
    "/openstack/latest/network_data.json",
    "/latest/meta-data/instance-id",
    "/openstack/latest/user_data",
    "/openstack/latest/vendor_data2.json",
)


def server_id(index: int) -> str:
    return f"{index:08x}-0000-4000-8000-{index:012x}"


class Source:
    """Views of `count` servers (the real source reads the database; the service
    caches each view for a few seconds, so that cost is amortised)."""

    def __init__(self, count: int) -> None:
        self.views = {
            server_id(i): InstanceView(
                uuid=server_id(i),
                name=f"vm{i}",
                hostname=f"vm{i}",
                project_id="bench",
                created_at=datetime.now(UTC),
                keys=(PublicKey("bench", "ssh", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA bench"),),
                user_data=b"#cloud-config\npassword: x\nchpasswd: {expire: false}\n" * 20,
            )
            for i in range(count)
        }

    def lookup(self, sid: str) -> InstanceView | None:
        return self.views.get(sid)


def run_service(
    run_dir: str,
    count: int,
    ready: multiprocessing.synchronize.Event,
    done: multiprocessing.synchronize.Event,
) -> None:
    with contextlib.suppress(ImportError):
        import uvloop  # kumo up serves on uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

    async def main() -> None:
        ids = [server_id(i) for i in range(count)]
        service = MetadataService(Source(count), Path(run_dir), adopt=ids)
        await service.start()
        ready.set()
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, done.wait)
        await service.stop()

    asyncio.run(main())


async def fetch(path: str, target: str) -> int:
    reader, writer = await asyncio.open_unix_connection(path)
    try:
        writer.write(
            f"GET {target} HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n".encode()
        )
        data = await reader.read()
    finally:
        writer.close()
    return int(data[9:12])


async def open_loop(
    sockets: list[str], rate: float, seconds: float
) -> tuple[list[float], list[float], int]:
    latencies: list[float] = []
    lags: list[float] = []
    errors = 0
    per_client = rate / len(sockets)

    async def client(index: int, sock: str) -> None:
        nonlocal errors
        # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
        start = time.perf_counter() + index / rate  # stagger the clients evenly
        count = int(seconds * per_client)
        for k in range(count):
            scheduled = start + k / per_client
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            began = time.perf_counter()
            status = await fetch(sock, PATHS[(index + k) % len(PATHS)])
            ended = time.perf_counter()
            latencies.append(ended - began)
            lags.append(began - scheduled)
            errors += status != 200

    await asyncio.gather(*(client(i, s) for i, s in enumerate(sockets)))
    return latencies, lags, errors


async def closed_loop(sockets: list[str], seconds: float) -> tuple[int, float]:
    done = 0
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def client(index: int, sock: str) -> None:
        nonlocal done
        k = 0
        while loop.time() < end:
            await fetch(sock, PATHS[(index + k) % len(PATHS)])
            done += 1
            k += 1

    began = loop.time()
    await asyncio.gather(*(client(i, s) for i, s in enumerate(sockets)))
    return done, loop.time() - began


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop requests/s")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--goal-p99-ms", type=float, default=2.0)
    args = parser.parse_args()
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    with tempfile.TemporaryDirectory(prefix="kumo-bench-") as run_dir:
        ctx = multiprocessing.get_context("spawn")
        ready, done = ctx.Event(), ctx.Event()
        service = ctx.Process(target=run_service, args=(run_dir, args.clients, ready, done))
        service.start()
        try:
            if not ready.wait(30):
                print("the metadata service did not start", file=sys.stderr)
                return 1
            sockets = [
                str(Path(run_dir) / "metadata" / f"{server_id(i)}.sock")
                for i in range(args.clients)
            ]
            asyncio.run(open_loop(sockets, 100, 1))  # warm up caches and the loop
            assert service.pid is not None
            cpu_before = cpu_seconds(service.pid)
            latencies, lags, errors = asyncio.run(open_loop(sockets, args.rate, args.seconds))
            service_cpu = cpu_seconds(service.pid) - cpu_before
            total, elapsed = asyncio.run(closed_loop(sockets, min(args.seconds, 5)))
        finally:
            done.set()
            service.join(10)
    p50, p99 = percentile(latencies, 0.50) * 1000, percentile(latencies, 0.99) * 1000
    achieved = len(latencies) / args.seconds
    print(
        f"metadata bench: {args.clients} clients, one unix connection per request, "
        f"cpu count {os.cpu_count()}"
    )
    print(
        f"  open loop @ {args.rate:.0f} req/s for {args.seconds:.0f} s: "
        f"{achieved:.0f} req/s, {len(latencies)} requests, {errors} errors"
    )
    print(
        f"  latency (connect to full reply) p50 {p50:.2f} ms  p99 {p99:.2f} ms  "
        f"max {max(latencies) * 1000:.2f} ms  mean {statistics.fmean(latencies) * 1000:.2f} ms"
    )
    # How late the generator itself started requests (timer granularity, CPU contention):
    # large values mean this machine, not the service, could not keep the schedule.
    print(
        f"  client schedule lag p50 {percentile(lags, 0.5) * 1000:.2f} ms  "
        f"p99 {percentile(lags, 0.99) * 1000:.2f} ms"
    )
    print(
        f"  service CPU: {service_cpu / len(latencies) * 1e6:.0f} us per request "
        f"({service_cpu / args.seconds * 100:.0f}% of one core at this rate)"
    )
    load = os.getloadavg()[0]
    print(f"  host load average (1 min) at the end: {load:.2f}")
    print(f"  closed loop ceiling: {total / elapsed:.0f} req/s")
    verdict = "met" if p99 <= args.goal_p99_ms else "MISSED"
    print(f"  goal p99 <= {args.goal_p99_ms} ms at {args.rate:.0f} req/s: {verdict}")
    return 0 if p99 <= args.goal_p99_ms and errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
