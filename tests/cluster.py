"""Several kumo hosts on one machine: network namespaces joined by an underlay bridge.

`Cluster` follows Incus's clustering tests: a namespace `ku-<id>` holds the underlay
bridge (10.250.0.1/24) and what every host reaches there: the API processes and a
one-replica Swift. Each simulated host is a namespace `kh-<id>-<n>` with a veth into that
bridge (10.250.0.<10+n>), and runs `kumo agent` with a data directory of its own.
PostgreSQL listens on a unix socket, which every namespace reaches through the file
system. Nothing is routed out of these namespaces; `stop()` ends every process it
started (by pid) and deletes the namespaces, whatever happened before.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from tests.children import die_with_parent
from tests.postgres import PostgresCluster
from tests.swift import KEY, USER, SwiftCluster

KUMO = str(Path(sys.executable).with_name("kumo"))
SUBNET = "10.250.0"


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    offset: int = 0  # where this run's output starts in a log shared with earlier runs
    url: str = ""

    def text(self) -> str:
        return self.log.read_bytes().decode(errors="replace") if self.log.exists() else ""

    def stop(self, sig: signal.Signals = signal.SIGTERM, timeout: float = 30) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Cluster:
    root: Path
    hosts: int = 3
    apis: int = 2
    store: str = "swift"  # swift | file (a folder every host shares)
    conf: str = ""  # extra kumo.conf lines for every process
    network: str = "user"  # [network] driver of the agents: user | bridge (VXLAN across hosts)
    host_conf: dict[int, str] = field(default_factory=dict)  # extra [DEFAULT] lines per host
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    postgres: PostgresCluster | None = None
    swift: SwiftCluster | None = None
    database: str = ""
    processes: dict[str, Process] = field(default_factory=dict)
    namespaces: list[str] = field(default_factory=list)

    @property
    def underlay(self) -> str:
        return f"ku-{self.tag}"

    def host_ns(self, n: int) -> str:
        return f"kh-{self.tag}-{n}"

    def host_ip(self, n: int) -> str:
        return f"{SUBNET}.{10 + n}"

    # -- start ---------------------------------------------------------------

    def start(self) -> Cluster:
        try:
            self._network()
            self.postgres = PostgresCluster().start()
            self.database = self.postgres.create_database("kumo")
            if self.store == "swift":
                self.swift = SwiftCluster(ip=f"{SUBNET}.1", root=self.root,
                                          netns=self.underlay)
                self.swift.launch()
            # Agents need only PostgreSQL; API processes sweep the store at start.
            for n in range(1, self.hosts + 1):
                self.start_agent(n, wait=False)
            if self.swift is not None:
                self.swift.wait()
            for n in range(self.apis):
                self.start_api(n, wait=False)
            for n in range(self.apis):
                self.wait_api(n)
            for n in range(1, self.hosts + 1):
                self.wait_agent(n)
        except BaseException:
            self.stop()
            raise
        return self

    def _network(self) -> None:
        ip("netns", "add", self.underlay)
        self.namespaces.append(self.underlay)
        ns = ["-n", self.underlay]
        ip(*ns, "link", "set", "lo", "up")
        ip(*ns, "link", "add", "br0", "type", "bridge")
        ip(*ns, "addr", "add", f"{SUBNET}.1/24", "dev", "br0")
        ip(*ns, "link", "set", "br0", "up")
        for n in range(1, self.hosts + 1):
            name = self.host_ns(n)
            ip("netns", "add", name)
            self.namespaces.append(name)
            ip("-n", name, "link", "set", "lo", "up")
            ip("-n", name, "link", "add", "eth0", "type", "veth", "peer", "name", f"h{n}",
               "netns", self.underlay)
            ip("-n", name, "addr", "add", f"{self.host_ip(n)}/24", "dev", "eth0")
            ip("-n", name, "link", "set", "eth0", "up")
            ip(*ns, "link", "set", f"h{n}", "master", "br0", "up")

    def _conf(self, folder: Path, extra: str = "") -> None:
        folder.mkdir(parents=True, exist_ok=True)
        lines = ["[DEFAULT]", "report_interval = 2", "service_down_time = 10", extra,
                 "[network]", f"driver = {self.network}", "package_proxy = false",
                 "[glance_store]"]
        if self.swift is not None:
            lines += ["default_store = swift", f"swift_store_auth_address = {self.swift.auth_url}",
                      "swift_store_auth_version = 1", f"swift_store_user = {USER}",
                      f"swift_store_key = {KEY}", "swift_store_large_object_chunk_size = 8"]
        else:
            lines += [f"filesystem_store_datadir = {self.root / 'images'}"]
        (folder / "kumo.conf").write_text("\n".join(lines) + "\n" + self.conf)

    def _spawn(self, key: str, netns: str, argv: list[str]) -> Process:
        log = self.root / f"{key}.log"
        offset = log.stat().st_size if log.exists() else 0
        env = dict(os.environ, PYTHONUNBUFFERED="1", HOME=str(self.root / "home"))
        # nsenter enters the network namespace only: `ip netns exec` would also give the
        # process a mount namespace of its own, hiding the namespaces an agent adds
        # under /run/netns (kumo's own, with bridge networking) from everyone else.
        popen = subprocess.Popen(["nsenter", f"--net=/run/netns/{netns}", "--", *argv], env=env,
                                 stdout=log.open("ab"), stderr=subprocess.STDOUT,
                                 start_new_session=True, preexec_fn=die_with_parent)
        process = Process(key, popen, log, offset)
        self.processes[key] = process
        return process

    def start_api(self, n: int, wait: bool = True) -> Process:
        data = self.root / f"api{n}"
        self._conf(data)
        process = self._spawn(f"api{n}", self.underlay, [
            KUMO, "api", "--database", self.database, "--data-dir", str(data),
            "--host", f"{SUBNET}.1", "--port", "0", "--no-user-config"])
        if wait:
            self.wait_api(n)
        return process

    def wait_api(self, n: int) -> None:
        process = self.processes[f"api{n}"]
        process.url = self._wait_for(process, r"kumo is up at (\S+)").group(1)

    def start_agent(self, n: int, wait: bool = True) -> Process:
        data = self.root / f"host{n}"
        self._conf(data, self.host_conf.get(n, ""))
        process = self._spawn(f"host{n}", self.host_ns(n), [
            KUMO, "agent", "--database", self.database, "--data-dir", str(data),
            "--name", f"host{n}", "--listen", f"{self.host_ip(n)}:0"])
        if wait:
            self.wait_agent(n)
        return process

    def wait_agent(self, n: int) -> None:
        self._wait_for(self.processes[f"host{n}"], r"kumo agent of host \S+ is up")

    def _wait_for(self, process: Process, pattern: str, timeout: float = 180) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, process.text()[process.offset:])
            if found:
                return found
            if process.popen.poll() is not None:
                raise RuntimeError(f"{process.name} exited:\n{process.text()[-4000:]}")
            time.sleep(0.2)
        raise RuntimeError(f"{process.name} not ready in {timeout} s:\n{process.text()[-4000:]}")

    # -- use -------------------------------------------------------------------

    def password(self) -> str:
        found = re.search(r"password (\S+)", self.processes["api0"].text())
        assert found
        return found.group(1)

    def clouds_yaml(self, n: int = 0) -> Path:
        return self.root / f"api{n}" / "clouds.yaml"

    def openstack(self, *args: str, api: int = 0, check: bool = True,
                  timeout: float = 180) -> subprocess.CompletedProcess[str]:
        """The real `openstack` CLI, run in the underlay (where the API processes are)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")}
        env.update(OS_CLIENT_CONFIG_FILE=str(self.clouds_yaml(api)), OS_CLOUD="kumo",
                   HOME=str(self.root / "home"))
        result = subprocess.run(["ip", "netns", "exec", self.underlay,
                                 str(Path(sys.executable).with_name("openstack")), *args],
                                env=env, capture_output=True, text=True, timeout=timeout,
                                check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"openstack {' '.join(args)}: {result.stderr}{result.stdout}")
        return result

    def http(self, api: int = 0) -> httpx.Client:
        """An HTTP client of API process `api`, signed in as admin.

        The API processes live in the underlay namespace; a socat there relays a unix
        socket (the file system crosses namespaces) to the API, so this process reaches
        it without any route or interface of its own."""
        process = self.processes[f"api{api}"]
        relay = self.root / f"api{api}.sock"
        if f"relay{api}" not in self.processes:
            self._spawn(f"relay{api}", self.underlay, [
                "socat", f"UNIX-LISTEN:{relay},fork,unlink-early",
                f"TCP:{process.url.split('//', 1)[1]}"])
            deadline = time.monotonic() + 10
            while not relay.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        client = httpx.Client(transport=httpx.HTTPTransport(uds=str(relay)),
                              base_url=process.url, timeout=60)
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
            "name": "admin", "domain": {"id": "default"}, "password": self.password()}}},
            "scope": {"project": {"name": "admin", "domain": {"id": "default"}}}}}
        answer = client.post("/identity/v3/auth/tokens", json=body)
        answer.raise_for_status()
        client.headers.update({"X-Auth-Token": answer.headers["X-Subject-Token"],
                               "OpenStack-API-Version": "compute 2.87"})
        return client

    def logs(self) -> str:
        return "\n".join(f"===== {p.name}\n{p.text()[-3000:]}" for p in self.processes.values())

    # -- stop --------------------------------------------------------------------

    def stop(self) -> None:
        for process in self.processes.values():
            with contextlib.suppress(Exception):
                process.stop()
        if self.swift is not None:
            self.swift.stop()
        if self.postgres is not None:
            self.postgres.stop()
        self._reap_guests()
        if self.network == "bridge":
            for n in range(1, self.hosts + 1):  # dnsmasq, kumo's namespace, the uplink
                subprocess.run(["nsenter", f"--net=/run/netns/{self.host_ns(n)}", "--", KUMO,
                                "network", "cleanup", "--force", "--data-dir",
                                str(self.root / f"host{n}")], capture_output=True, check=False)
        for name in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "delete", name], capture_output=True, check=False)
        self.namespaces.clear()

    def _reap_guests(self) -> None:
        """QEMUs of this cluster that outlived their agent (a test that failed midway)."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                cmdline = (entry / "cmdline").read_bytes()
                cwd = os.readlink(entry / "cwd")
            except OSError:
                continue
            # kumo starts each QEMU in its server's folder under a host's data directory
            if b"qemu-system" in cmdline.split(b"\0", 1)[0] and cwd.startswith(str(self.root)):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(entry.name), signal.SIGKILL)
