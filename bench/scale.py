"""Scale-out: the scheduler over 3 hosts against 1, and 2 API processes against 1.

One simulated cloud on this machine (tests/cluster.py, as root): three `kumo agent`s in
network namespaces of their own (host1 in zone `one`, host2 and host3 in zone `two`),
two `kumo api` processes, one PostgreSQL. Two ratios, each from interleaved rounds (A B
A B ...), reported as the median and the minimum of the per-round ratios:

1. `server create` -> ACTIVE for a batch of servers (default 3 m1.tiny at once, through
   the API, the scheduler, the jobs and the agents): placed over all 3 hosts (no zone)
   against pinned to 1 host (zone `one`). Ratio = time on 3 hosts / time on 1 host.
2. API throughput: authenticated `GET /compute/v2.1/servers/detail` (token check and a
   database read) from --clients concurrent clients for --seconds, against 1 API
   process and against 2 (the clients split over both, as behind a load balancer).
   Ratio = requests/s with 2 / requests/s with 1.

Both run on the same 2 cores as everything else, so they show what the design costs
and gains on one machine, not what separate machines would add.

    sudo .venv/bin/python bench/scale.py [--rounds 3] [--batch 3] [--seconds 8] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def token(url: str, password: str) -> str:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
    answer = httpx.post(f"{url}/identity/v3/auth/tokens", json=body, timeout=60)
    answer.raise_for_status()
    return answer.headers["X-Subject-Token"]


# -- measurements (run inside the underlay namespace, where the API processes are) ----

def boot_batch(url: str, auth: str, image: str, batch: int, zone: str | None) -> float:
    """Seconds from the first POST /servers to the last server ACTIVE; then deletes them."""
    client = httpx.Client(base_url=f"{url}/compute/v2.1", timeout=120,
                          headers={"X-Auth-Token": auth})
    ids = []
    started = time.monotonic()
    try:
        for n in range(batch):
            spec = {"name": f"bench-{n}", "imageRef": image, "flavorRef": "1"}
            if zone:
                spec["availability_zone"] = zone
            answer = client.post("/servers", json={"server": spec})
            answer.raise_for_status()
            ids.append(answer.json()["server"]["id"])
        pending = set(ids)
        while pending:
            for server_id in list(pending):
                server = client.get(f"/servers/{server_id}").json()["server"]
                if server["status"] == "ERROR":
                    raise SystemExit(f"server {server_id} failed: {server.get('fault')}")
                if server["status"] == "ACTIVE":
                    pending.discard(server_id)
            time.sleep(0.2)
        return time.monotonic() - started
    finally:
        for server_id in ids:
            client.delete(f"/servers/{server_id}")
        deadline = time.monotonic() + 120
        while ids and time.monotonic() < deadline:
            ids = [i for i in ids if client.get(f"/servers/{i}").status_code != 404]
            time.sleep(0.5)


async def throughput(urls: list[str], auth: str, clients: int, seconds: float) -> float:
    """Requests per second of `clients` concurrent clients spread over `urls`."""
    done = 0
    stop = time.monotonic() + seconds

    async def one(url: str) -> None:
        nonlocal done
        async with httpx.AsyncClient(base_url=url, timeout=60,
                                     headers={"X-Auth-Token": auth}) as client:
            while time.monotonic() < stop:
                answer = await client.get("/compute/v2.1/servers/detail")
                answer.raise_for_status()
                done += 1

    began = time.monotonic()
    await asyncio.gather(*(one(urls[n % len(urls)]) for n in range(clients)))
    return done / (time.monotonic() - began)


def measure(plan: dict[str, object]) -> dict[str, list[float]]:
    urls = list(plan["urls"])  # type: ignore[call-overload]
    auth = token(urls[0], str(plan["password"]))
    rounds, batch = int(plan["rounds"]), int(plan["batch"])  # type: ignore[call-overload]
    clients, seconds = int(plan["clients"]), float(plan["seconds"])  # type: ignore[call-overload]
    out: dict[str, list[float]] = {"one_host": [], "three_hosts": [], "one_api": [],
                                   "two_apis": []}
    for n in range(rounds):
        print(f"round {n + 1}/{rounds}", file=sys.stderr, flush=True)
        out["one_host"].append(boot_batch(urls[0], auth, str(plan["image"]), batch, "one"))
        out["three_hosts"].append(boot_batch(urls[1], auth, str(plan["image"]), batch, None))
        out["one_api"].append(asyncio.run(throughput(urls[:1], auth, clients, seconds)))
        out["two_apis"].append(asyncio.run(throughput(urls, auth, clients, seconds)))
    return out


# -- the driver (root namespace) --------------------------------------------------------

def ratios(numerators: list[float], denominators: list[float]) -> tuple[float, float]:
    each = [a / b for a, b in zip(numerators, denominators, strict=True)]
    return statistics.median(each), min(each)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=3, help="servers per boot round")
    parser.add_argument("--seconds", type=float, default=8.0, help="per throughput round")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--measure", help=argparse.SUPPRESS)  # the inner process
    options = parser.parse_args()
    if options.measure:
        print(json.dumps(measure(json.loads(options.measure))))
        return
    if os.geteuid() != 0:
        raise SystemExit("bench/scale.py needs root: its hosts are network namespaces")
    from tests.cluster import Cluster

    from kumo.imagebuild.tiny import cached_image

    image = cached_image()
    work = Path(tempfile.mkdtemp(prefix="kumo-bench-scale-"))
    cluster = Cluster(work, store="file", host_conf={
        n: f"default_availability_zone = {zone}"
        for n, zone in ((1, "one"), (2, "two"), (3, "two"))})
    try:
        print("starting PostgreSQL, 2 API processes and 3 agents ...", flush=True)
        cluster.start()
        cluster.openstack("image", "create", "--disk-format", "qcow2", "--container-format",
                          "bare", "--file", str(image), "tiny")
        image_id = cluster.openstack("image", "show", "tiny", "-f", "value", "-c",
                                     "id").stdout.strip()
        plan = {"urls": [cluster.processes[f"api{n}"].url for n in range(2)],
                "password": cluster.password(), "image": image_id, "rounds": options.rounds,
                "batch": options.batch, "clients": options.clients,
                "seconds": options.seconds}
        inner = subprocess.run(["ip", "netns", "exec", cluster.underlay, sys.executable,
                                __file__, "--measure", json.dumps(plan)],
                               capture_output=True, text=True, check=False)
        if inner.returncode != 0:
            raise SystemExit(f"measuring failed (logs in {work}):\n{inner.stderr}")
        found = json.loads(inner.stdout)
    finally:
        cluster.stop()
    shutil.rmtree(work, ignore_errors=True)  # kept above when something failed: its logs
    boot_median, boot_min = ratios(found["three_hosts"], found["one_host"])
    api_median, api_min = ratios(found["two_apis"], found["one_api"])
    print(f"server create -> ACTIVE, {options.batch} servers at once, "
          f"{options.rounds} interleaved rounds:")
    print(f"  1 host:   median {statistics.median(found['one_host']):.2f} s")
    print(f"  3 hosts:  median {statistics.median(found['three_hosts']):.2f} s")
    print(f"  ratio 3 hosts / 1 host: median {boot_median:.2f}, min {boot_min:.2f}")
    print(f"API GET /servers/detail, {options.clients} clients, {options.seconds:.0f} s "
          f"per round:")
    print(f"  1 API process:   median {statistics.median(found['one_api']):.0f} req/s")
    print(f"  2 API processes: median {statistics.median(found['two_apis']):.0f} req/s")
    print(f"  ratio 2 / 1: median {api_median:.2f}, min {api_min:.2f}")


if __name__ == "__main__":
    main()
