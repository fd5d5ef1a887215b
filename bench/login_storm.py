"""Login storm: 200 concurrent `POST /v3/auth/tokens` while other calls go on.

Starts a real `kumo up` (default `password_hash_rounds`, Keystone's bcrypt cost) on
loopback, then, in rounds, measures the p99 of ordinary API calls (image list,
flavor list, token validation) alone, then again while 200 clients log in at once.
Prints token issuance p50/p99 and the other calls' p50/p99 with and without the
storm, and per-round ratios (median, minimum). Goal: other calls' p99 <= 100 ms
during the storm.

Usage: .venv/bin/python bench/login_storm.py [--logins 200] [--rounds 3]
"""

from __future__ import annotations

import argparse
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).parent))
from upload import start_kumo

OTHER_CALLS = ("/image/v2/images?limit=20", "/compute/v2.1/flavors", "/identity/v3/auth/tokens")


def auth_body(password: str) -> dict[str, object]:
    return {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "domain": {"id": "default"}, "password": password}}},
        "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def other_calls(url: str, token: str, stop: threading.Event, out: list[float]) -> None:
    """One client doing ordinary calls back to back (keep-alive), each timed."""
    headers = {"X-Auth-Token": token, "X-Subject-Token": token}
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        n = 0
        while not stop.is_set():
            started = time.perf_counter()
            response = client.get(OTHER_CALLS[n % len(OTHER_CALLS)])
            out.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text
            n += 1


def measure_others(url: str, token: str, seconds: float, clients: int = 4) -> list[float]:
    stop, out = threading.Event(), []  # type: ignore[var-annotated]
    threads = [threading.Thread(target=other_calls, args=(url, token, stop, out))
               for _ in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return out


def storm(url: str, token: str, password: str, logins: int) -> tuple[list[float], list[float]]:
    """(token issuance times, other calls' times) while `logins` clients log in at once."""
    issued: list[float] = []
    lock = threading.Lock()
    go = threading.Event()

    def login() -> None:
        with httpx.Client(base_url=url, timeout=600) as client:
            go.wait()
            started = time.perf_counter()
            response = client.post("/identity/v3/auth/tokens", json=auth_body(password))
            assert response.status_code == 201, response.text
            with lock:
                issued.append(time.perf_counter() - started)

    threads = [threading.Thread(target=login) for _ in range(logins)]
    for thread in threads:
        thread.start()
    stop, others = threading.Event(), []  # type: ignore[var-annotated]
    watchers = [threading.Thread(target=other_calls, args=(url, token, stop, others))
                for _ in range(4)]
    for watcher in watchers:
        watcher.start()
    time.sleep(0.5)
    go.set()
    for thread in threads:
        thread.join()
    stop.set()
    for watcher in watchers:
        watcher.join()
    return issued, others


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logins", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="kumo-bench-", dir="/var/tmp"))
    proc = None
    try:
        proc, url, password, _log = start_kumo(work / "kumo")
        with httpx.Client(base_url=url, timeout=60) as client:
            token = client.post("/identity/v3/auth/tokens",
                                json=auth_body(password)).headers["x-subject-token"]
            for n in range(20):  # something to list
                client.post("/image/v2/images", headers={"X-Auth-Token": token},
                            json={"name": f"i{n}", "disk_format": "raw",
                                  "container_format": "bare"})
        ratios, p99s = [], []
        for number in range(1, args.rounds + 1):
            quiet = measure_others(url, token, 5.0)
            issued, busy = storm(url, token, password, args.logins)
            ratio = pct(busy, 0.99) / pct(quiet, 0.99)
            ratios.append(ratio)
            p99s.append(pct(busy, 0.99))
            print(f"round {number}: tokens p50 {statistics.median(issued):6.2f} s "
                  f"p99 {pct(issued, 0.99):6.2f} s | other calls quiet p50 "
                  f"{statistics.median(quiet) * 1000:5.1f} ms p99 {pct(quiet, 0.99) * 1000:5.1f} "
                  f"ms | during storm p50 {statistics.median(busy) * 1000:5.1f} ms p99 "
                  f"{pct(busy, 0.99) * 1000:5.1f} ms ({len(busy)} calls) | p99 ratio {ratio:.2f}",
                  flush=True)
        print(f"other calls' p99 during {args.logins} logins: median "
              f"{statistics.median(p99s) * 1000:.1f} ms, max {max(p99s) * 1000:.1f} ms "
              "(goal <= 100 ms)")
        print(f"p99 storm/quiet ratio: median {statistics.median(ratios):.2f}, "
              f"minimum {min(ratios):.2f}")
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
