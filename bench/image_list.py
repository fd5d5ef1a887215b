"""Image list latency against the number of images: `GET /v2/images?limit=20`.

Starts one `kumo up` per size (100, 1,000, 10,000, 50,000 images, written straight
into each one's SQLite database before it starts: a mix of projects, visibilities,
tags and properties), then times the same calls on all of them interleaved, round
after round (A B C D, A B C D, ...), and prints per size the median latency and the
per-round ratio to the 100-image kumo (median and minimum). Goal: limit=20 at
50,000 images within 1.5x of the same call at 100.

Calls: the admin's default page, a member project's default page (visibility and
membership in the query), a name filter, a tag filter, and a deep page (a marker
from the middle of the list).

Usage: .venv/bin/python bench/image_list.py [--sizes 100,1000,10000,50000] [--rounds 30]
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from upload import start_kumo


def auth(url: str, user: str, password: str, project: str) -> str:
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": user, "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": project, "domain": {"id": "default"}}}}}
    response = httpx.post(f"{url}/identity/v3/auth/tokens", json=body, timeout=60)
    assert response.status_code == 201, response.text
    return response.headers["x-subject-token"]




def fill(db: Path, count: int, member_project: str) -> None:
    """`count` images: 60 % the admin's, 25 % public of others, 15 % shared with `member`."""
    rng = random.Random(count)
    con = sqlite3.connect(db)
    admin_project = con.execute("SELECT id FROM projects WHERE name = 'admin'").fetchone()[0]
    start = datetime(2025, 1, 1, tzinfo=UTC).replace(tzinfo=None)
    images, tags, props, members = [], [], [], []
    for n in range(count):
        image_id = str(uuid.UUID(int=rng.getrandbits(128), version=4))
        kind = rng.random()
        owner = admin_project if kind < 0.6 else uuid.uuid4().hex
        visibility = "private" if kind < 0.6 else ("public" if kind < 0.85 else "shared")
        when = (start + timedelta(seconds=n)).strftime("%Y-%m-%d %H:%M:%S.000000")
        images.append((image_id, f"image-{n}", "qcow2", "bare", 1 << 20, 1 << 26, visibility,
                       0, 0, 0, 0, owner, "active", when, when))
        tags.append((image_id, f"tag-{n % 100}"))
        props.append((image_id, "os_distro", rng.choice(("debian", "ubuntu", "cirros"))))
        if visibility == "shared":
            members.append((image_id, member_project, "accepted", when, when))
    con.executemany(
        "INSERT INTO images (id, name, disk_format, container_format, size, virtual_size, "
        "visibility, protected, os_hidden, min_disk, min_ram, owner, status, created_at, "
        "updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", images)
    con.executemany("INSERT INTO image_tags (image_id, value) VALUES (?,?)", tags)
    con.executemany("INSERT INTO image_properties (image_id, name, value) VALUES (?,?,?)", props)
    con.executemany("INSERT INTO image_members (image_id, member, status, created_at, "
                    "updated_at) VALUES (?,?,?,?,?)", members)
    con.commit()
    con.execute("ANALYZE")
    con.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,1000,10000,50000")
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="kumo-bench-", dir="/var/tmp"))
    procs: list[subprocess.Popen[str]] = []
    try:
        kumos = []
        for size in sizes:
            data = work / f"kumo-{size}" / "data"
            proc, url, password, _ = start_kumo(data)
            procs.append(proc)
            admin = auth(url, "admin", password, "admin")
            h = {"X-Auth-Token": admin}
            project = httpx.post(f"{url}/identity/v3/projects", headers=h, timeout=120,
                                 json={"project": {"name": "member"}}).json()["project"]
            user = httpx.post(f"{url}/identity/v3/users", headers=h, timeout=120, json={"user": {
                "name": "member", "password": "member-pw",
                "default_project_id": project["id"]}}).json()["user"]
            role = httpx.get(f"{url}/identity/v3/roles?name=member", headers=h, timeout=120).json()
            httpx.put(f"{url}/identity/v3/projects/{project['id']}/users/{user['id']}/roles/"
                      f"{role['roles'][0]['id']}", headers=h, timeout=120)
            fill(data / "kumo.db", size, project["id"])
            member = auth(url, "member", "member-pw", "member")
            middle = httpx.get(f"{url}/image/v2/images?limit=1&name=image-{size // 2}",
                               headers=h, timeout=120).json()["images"][0]["id"]
            kumos.append((size, url, admin, member, middle))
            print(f"{size} images in {data}", flush=True)
        calls = {
            "admin limit=20": lambda k: (k[2], "/image/v2/images?limit=20"),
            "member limit=20": lambda k: (k[3], "/image/v2/images?limit=20"),
            "name=": lambda k: (k[2], f"/image/v2/images?limit=20&name=image-{k[0] // 3}"),
            "tag=": lambda k: (k[2], "/image/v2/images?limit=20&tag=tag-7"),
            "deep marker": lambda k: (k[2], f"/image/v2/images?limit=20&marker={k[4]}"),
        }
        clients = [httpx.Client(base_url=k[1], timeout=60) for k in kumos]
        for label, call in calls.items():
            times: dict[int, list[float]] = {k[0]: [] for k in kumos}
            for _ in range(args.rounds + 3):  # the first rounds warm up
                for kumo, client in zip(kumos, clients, strict=True):
                    token, path = call(kumo)
                    started = time.perf_counter()
                    response = client.get(path, headers={"X-Auth-Token": token})
                    times[kumo[0]].append(time.perf_counter() - started)
                    assert response.status_code == 200, response.text
            base = times[sizes[0]][3:]
            line = [f"{label:16}"]
            for size in sizes:
                mine = times[size][3:]
                ratios = [m / b for m, b in zip(mine, base, strict=True)]
                line.append(f"{size:>6}: {statistics.median(mine) * 1000:6.1f} ms "
                            f"(x{statistics.median(ratios):.2f}, min x{min(ratios):.2f})")
            print(" | ".join(line), flush=True)
        print("ratios are per round against the first size, median and minimum "
              "(goal: <= 1.5 at 50,000 for limit=20)")
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
