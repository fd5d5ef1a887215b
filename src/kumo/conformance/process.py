"""A `kumo up` child process on a free port, for the conformance run and the e2e tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx


@dataclass
class KumoProcess:
    url: str
    data_dir: Path
    clouds_yaml: Path
    password: str
    process: subprocess.Popen[str]
    log: Path

    def env(self) -> dict[str, str]:
        """Environment for running the real `openstack`/`glance` CLIs against this kumo."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env["OS_CLIENT_CONFIG_FILE"] = str(self.clouds_yaml)
        env["OS_CLOUD"] = "kumo"
        env["HOME"] = str(self.data_dir.parent / "home")
        return env


def start_kumo(data_dir: Path, extra_args: tuple[str, ...] = (),
               ready_timeout: float = 60) -> KumoProcess:
    """Start `kumo up` on a free 127.0.0.1 port and wait until /healthcheck answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir.parent / "home").mkdir(exist_ok=True)
    log = data_dir.parent / f"kumo-{int(time.time() * 1000)}.log"
    kumo = Path(sys.executable).with_name("kumo")
    env = dict(os.environ, HOME=str(data_dir.parent / "home"), PYTHONUNBUFFERED="1")
    with open(log, "w") as out:
        process = subprocess.Popen(
            [str(kumo), "up", "--data-dir", str(data_dir), "--port", "0", *extra_args],
            stdout=out, stderr=subprocess.STDOUT, text=True, env=env,
        )
    deadline = time.monotonic() + ready_timeout
    url = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"kumo up exited early:\n{log.read_text()}")
        match = re.search(r"kumo is up at (\S+)", log.read_text())
        if match:
            url = match.group(1)
            try:
                if httpx.get(url + "/healthcheck", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
        time.sleep(0.1)
    else:
        process.kill()
        process.wait()
        raise RuntimeError(f"kumo up did not become ready:\n{log.read_text()}")
    password = re.search(r"password (\S+)", log.read_text())
    if not (url and password):
        stop_kumo_process(process)
        raise RuntimeError(f"kumo up did not print its URL and password:\n{log.read_text()}")
    return KumoProcess(url=url, data_dir=data_dir, clouds_yaml=data_dir / "clouds.yaml",
                       password=password.group(1), process=process, log=log)


def stop_kumo(kumo: KumoProcess) -> None:
    stop_kumo_process(kumo.process)


def stop_kumo_process(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
