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
               ready_timeout: float = 60, *, network: str = "user") -> KumoProcess:
    """Start `kumo up` on a free 127.0.0.1 port and wait until /healthcheck answers.

    `network` is `[network] driver` (written to DATA/kumo.conf unless one is there);
    with `bridge` this kumo gets an external network of its own, so it never meets
    another kumo's on this host.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    conf = data_dir / "kumo.conf"
    if not conf.exists():
        lines = ["[network]", f"driver = {network}"]
        if network == "bridge":
            from kumo.network.uplink import unused_cidr

            lines.append(f"external_cidr = {unused_cidr()}")
        conf.write_text("\n".join(lines) + "\n")
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


def stop_kumo(kumo: KumoProcess, *, cleanup: bool = True) -> None:
    """Stop `kumo up`; then (`cleanup`, as root) remove its network plumbing with
    `kumo network cleanup`, the command a user runs."""
    stop_kumo_process(kumo.process)
    if cleanup and os.geteuid() == 0:
        kumo_cli = Path(sys.executable).with_name("kumo")
        subprocess.run([str(kumo_cli), "network", "cleanup", "--force", "--data-dir",
                        str(kumo.data_dir)], capture_output=True, timeout=60, check=False)


def stop_kumo_process(process: subprocess.Popen[str]) -> None:
    """SIGTERM, then SIGKILL after 30 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
