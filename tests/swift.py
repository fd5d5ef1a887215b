"""A throw-away one-replica OpenStack Swift for tests and benchmarks (Debian's swift 2.30).

`SwiftCluster` writes a swift.conf, one-replica rings and the four servers' configs into
a temp folder (`swift_dir` points every server there, so /etc/swift is never read),
starts memcached (tempauth keeps its tokens there), the account, container and object
servers over one device folder (`mount_check = false`: a plain ext4 folder has the
xattrs Swift needs) and the proxy with tempauth, SLO and s3api, each as one process
(`workers = 0`) on a free 127.0.0.1 port, and stops them all at the end.

- Swift API: auth URL `{url}/auth/v1.0`, user `test:tester`, key `testing`.
- S3 API (s3api): endpoint `url`, access key `test:tester`, secret key `testing`.

The fixture `swift` (session) starts one on first use.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.children import die_with_parent

USER, KEY = "test:tester", "testing"
PACKAGES = "swift swift-proxy swift-account swift-container swift-object memcached"

_PROXY = """\
[DEFAULT]
bind_ip = {ip}
bind_port = {port}
swift_dir = {etc}
user = {user}
workers = 0
log_level = WARNING

[pipeline:main]
pipeline = catch_errors gatekeeper healthcheck proxy-logging cache listing_formats bulk \
s3api tempauth copy slo dlo proxy-logging proxy-server

[app:proxy-server]
use = egg:swift#proxy
account_autocreate = true

[filter:tempauth]
use = egg:swift#tempauth
user_test_tester = {key} .admin
storage_url_scheme = default

[filter:s3api]
use = egg:swift#s3api
location = us-east-1

[filter:cache]
use = egg:swift#memcache
memcache_servers = {ip}:{memcached}

{filters}"""

# The rest of the pipeline: each filter is Swift's own egg entry point of that name.
_FILTERS = "".join(f"[filter:{name}]\nuse = egg:swift#{name.replace('-', '_')}\n"
                   for name in ("catch_errors", "gatekeeper", "healthcheck", "proxy-logging",
                                "listing_formats", "bulk", "copy", "slo", "dlo"))

_STORAGE = """\
[DEFAULT]
bind_ip = {ip}
bind_port = {port}
devices = {devices}
mount_check = false
swift_dir = {etc}
user = {user}
workers = 0
log_level = WARNING

[pipeline:main]
pipeline = {kind}-server

[app:{kind}-server]
use = egg:swift#{kind}
"""


def free_port(ip: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((ip, 0))
        return int(probe.getsockname()[1])


class SwiftCluster:
    """memcached + account/container/object servers + proxy, one replica, in a temp dir."""

    def __init__(self, ip: str = "127.0.0.1", root: Path | None = None,
                 netns: str | None = None) -> None:
        for tool in ("swift-proxy-server", "swift-ring-builder", "memcached"):
            if shutil.which(tool) is None:
                raise FileNotFoundError(f"{tool} is missing (Debian: apt-get install "
                                        f"{PACKAGES}; `make deps` does it)")
        self.ip = ip
        self.netns = netns
        self.root = Path(tempfile.mkdtemp(prefix="kumo-swift-", dir=root))
        self.etc = self.root / "etc"
        self.devices = self.root / "srv"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.ports = {name: free_port() if netns is None else port
                      for port, name in enumerate(
                          ("memcached", "account", "container", "object", "proxy"), 6200)}
        self.url = f"http://{ip}:{self.ports['proxy']}"

    @property
    def auth_url(self) -> str:
        return f"{self.url}/auth/v1.0"

    def _prefix(self) -> list[str]:
        return ["ip", "netns", "exec", self.netns] if self.netns else []

    def _spawn(self, name: str, argv: list[str]) -> None:
        log = (self.root / f"{name}.log").open("wb")
        self.processes.append(subprocess.Popen(
            [*self._prefix(), *argv], stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=die_with_parent))

    def start(self) -> SwiftCluster:
        self.launch()
        try:
            self.wait()
        except BaseException:
            self.stop()
            raise
        return self

    def launch(self) -> None:
        """Configure and start the processes; `wait()` for them to answer."""
        try:
            self._configure()
            self._spawn("memcached", ["memcached", "-l", self.ip, "-p",
                                      str(self.ports["memcached"]), "-U", "0", "-m", "16",
                                      "-u", getpass.getuser()])
            for kind in ("account", "container", "object"):
                self._spawn(kind, [f"swift-{kind}-server", str(self.etc / f"{kind}.conf")])
            self._spawn("proxy", ["swift-proxy-server", str(self.etc / "proxy.conf")])
        except BaseException:
            self.stop()
            raise

    def _configure(self) -> None:
        self.etc.mkdir()
        (self.devices / "d1").mkdir(parents=True)
        (self.etc / "swift.conf").write_text(
            "[swift-hash]\nswift_hash_path_suffix = kumo-test\n\n"
            "[storage-policy:0]\nname = Policy-0\ndefault = yes\n")
        common = {"ip": self.ip, "etc": self.etc, "user": getpass.getuser()}
        for kind in ("account", "container", "object"):
            builder = str(self.etc / f"{kind}.builder")
            for args in (["create", "4", "1", "1"],
                         ["add", f"r1z1-{self.ip}:{self.ports[kind]}/d1", "1"],
                         ["rebalance"]):
                result = subprocess.run(["swift-ring-builder", builder, *args],
                                        capture_output=True, text=True, check=False)
                if result.returncode not in (0, 1):  # 1: rebalance warnings
                    raise RuntimeError(f"swift-ring-builder {args}: {result.stdout}")
            (self.etc / f"{kind}.conf").write_text(_STORAGE.format(
                kind=kind, port=self.ports[kind], devices=self.devices, **common))
        (self.etc / "proxy.conf").write_text(_PROXY.format(
            port=self.ports["proxy"], key=KEY, memcached=self.ports["memcached"],
            filters=_FILTERS, **common))

    def wait(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes:
                if process.poll() is not None:
                    raise RuntimeError(f"a Swift process exited:\n{self.logs()}")
            if self.netns is not None:
                result = subprocess.run([*self._prefix(), "curl", "-fs", self.auth_url,
                                         "-H", f"X-Auth-User: {USER}", "-H",
                                         f"X-Auth-Key: {KEY}"], capture_output=True)
                if result.returncode == 0:
                    return
            else:
                with contextlib.suppress(httpx.HTTPError):
                    response = httpx.get(self.auth_url, timeout=2, headers={
                        "X-Auth-User": USER, "X-Auth-Key": KEY})
                    storage = response.headers.get("x-storage-url")
                    if response.status_code == 200 and storage and httpx.head(
                            storage, timeout=2, headers={
                                "X-Auth-Token": response.headers["x-auth-token"]}
                    ).status_code in (200, 204):
                        return
            time.sleep(0.2)
        raise RuntimeError(f"Swift did not answer in {timeout} s:\n{self.logs()}")

    def logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}"
                         for p in sorted(self.root.glob("*.log")))

    def stop(self) -> None:
        for process in reversed(self.processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> SwiftCluster:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def swift() -> Iterator[SwiftCluster]:
    """A one-replica Swift for the whole session (started on first use)."""
    with SwiftCluster() as cluster:
        yield cluster
