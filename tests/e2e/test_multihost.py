"""Three compute hosts, two API processes, PostgreSQL and Swift on one machine.

Each host is a network namespace running `kumo agent` (tests/cluster.py); the API
processes and a one-replica Swift sit on the underlay bridge; PostgreSQL listens on a
unix socket. The real `openstack` CLI does what a user would; the tests wait on states
over HTTP (cheaper than a CLI start per poll). Guests are the tiny image on real
networks: each host builds them in its own kumo namespace, and a network's bridges on
different hosts are joined by VXLAN over the underlay.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.cluster import Cluster
from tests.e2e.consoles import read_until, ws_url_of

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.guest,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces for the hosts need root"),
    pytest.mark.skipif(shutil.which("swift-proxy-server") is None,
                       reason="Swift is not installed (make deps installs it)"),
]
V = "/compute/v2.1"
SSH = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, tiny_image: Path) -> Iterator[Cluster]:
    started = Cluster(tmp_path_factory.mktemp("cluster"), network="bridge").start()
    try:
        # Uploaded through the first API process: the bytes go to Swift.
        started.openstack("image", "create", "--disk-format", "qcow2", "--container-format",
                          "bare", "--file", str(tiny_image), "tiny", api=0)
        yield started
    finally:
        started.stop()


@pytest.fixture(scope="module")
def api(cluster: Cluster) -> Iterator[httpx.Client]:
    client = cluster.http(1)
    try:
        yield client
    finally:
        client.close()


def server(api: httpx.Client, name: str) -> dict[str, Any]:
    found = api.get(f"{V}/servers/detail", params={"name": f"^{name}$"}).json()["servers"]
    assert len(found) == 1, found
    return dict(found[0])


def until(check: Callable[[], Any], what: str, timeout: float = 240) -> Any:
    deadline = time.monotonic() + timeout
    while not (result := check()):
        assert time.monotonic() < deadline, f"{what}: not after {timeout} s"
        time.sleep(1)
    return result


def wait_status(api: httpx.Client, name: str, wanted: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = server(api, name)
        assert found["status"] != "ERROR" or wanted == "ERROR", found.get("fault")
        return found if found["status"] == wanted else None

    return dict(until(check, f"{name} {wanted}"))


@contextlib.contextmanager
def servers(cluster: Cluster, api: httpx.Client, *names: str) -> Iterator[list[str]]:
    """Names of servers the block creates; all of them are deleted afterwards."""
    try:
        yield list(names)
    finally:
        ids = [s["id"] for s in api.get(f"{V}/servers").json()["servers"]
               if s["name"] in names]
        for server_id in ids:
            api.delete(f"{V}/servers/{server_id}")
        until(lambda: all(api.get(f"{V}/servers/{i}").status_code == 404 for i in ids),
              "servers deleted", timeout=120)


def booted(api: httpx.Client, server_id: str, what: str) -> None:
    """Wait for the tiny guest's "boot finished" on its serial console (its host's log)."""
    def output() -> str:
        answer = api.post(f"{V}/servers/{server_id}/action", json={"os-getConsoleOutput": {}})
        assert answer.status_code == 200, answer.text
        return str(answer.json()["output"])

    until(lambda: "boot finished" in output(), what, timeout=120)


def create(cluster: Cluster, name: str, *extra: str, api: int = 0) -> None:
    cluster.openstack("server", "create", "--image", "tiny", "--flavor", "m1.tiny", *extra,
                      name, api=api)


def test_the_scheduler_spreads_servers_and_keeps_a_group_apart(
        cluster: Cluster, api: httpx.Client) -> None:
    services = json.loads(cluster.openstack("compute", "service", "list", "--service",
                                            "nova-compute", "-f", "json").stdout)
    assert sorted((s["Host"], s["State"]) for s in services) == [
        ("host1", "up"), ("host2", "up"), ("host3", "up")]
    for n in (0, 1):  # both API processes run on this machine: one scheduler, listed alike
        schedulers = json.loads(cluster.openstack("compute", "service", "list", "--service",
                                                  "nova-scheduler", "-f", "json",
                                                  api=n).stdout)
        assert [(s["Host"], s["State"]) for s in schedulers] == [(socket.gethostname(), "up")]
    group = json.loads(cluster.openstack("server", "group", "create", "--policy",
                                         "anti-affinity", "apart", "-f", "json").stdout)
    try:
        with servers(cluster, api, "s0", "s1", "apart0", "apart1"):
            # The image came in through API 0; half of the servers go through API 1.
            create(cluster, "s0", api=0)
            create(cluster, "s1", api=1)
            for n in range(2):
                create(cluster, f"apart{n}", "--hint", f"group={group['id']}", api=n)
            hosts = {name: wait_status(api, name, "ACTIVE")["OS-EXT-SRV-ATTR:host"]
                     for name in ("s0", "s1", "apart0", "apart1")}
            assert set(hosts.values()) == {"host1", "host2", "host3"}, hosts
            assert hosts["apart0"] != hosts["apart1"], hosts
            hypervisors = json.loads(cluster.openstack(  # 2.88 dropped the usage columns
                "--os-compute-api-version", "2.87", "hypervisor", "list", "--long",
                "-f", "json").stdout)
            assert sum(h["vCPUs Used"] for h in hypervisors) == 4
            assert {h["Host IP"] for h in hypervisors} == {
                "10.250.0.11", "10.250.0.12", "10.250.0.13"}
    finally:
        cluster.openstack("server", "group", "delete", group["id"], check=False)


def test_cold_migration_moves_a_server_and_it_boots_on_the_new_host(
        cluster: Cluster, api: httpx.Client) -> None:
    with servers(cluster, api, "mover"):
        create(cluster, "mover")
        before = wait_status(api, "mover", "ACTIVE")
        source = before["OS-EXT-SRV-ATTR:host"]
        # A booted guest powers off at once on ACPI (a booting one only after nova's
        # 60 s shutdown timeout); its console log comes from the source host's agent.
        booted(api, before["id"], "the guest's boot on its first host")
        cluster.openstack("server", "migrate", "mover")
        moved = wait_status(api, "mover", "VERIFY_RESIZE")
        dest = moved["OS-EXT-SRV-ATTR:host"]
        assert dest != source
        cluster.openstack("server", "migration", "confirm", "mover")
        assert wait_status(api, "mover", "ACTIVE")["OS-EXT-SRV-ATTR:host"] == dest
        # The console log comes from the new host's agent: the guest booted there.
        booted(api, moved["id"], "the guest's boot on the new host")
        assert not (cluster.root / source / "instances" / moved["id"]).exists()
        migrations = json.loads(cluster.openstack("server", "migration", "list",
                                                  "-f", "json").stdout)
        assert [(m["Source Compute"], m["Dest Compute"], m["Status"])
                for m in migrations if m["Server UUID"] == moved["id"]] == [
            (source, dest, "confirmed")]


def test_consoles_of_a_server_on_an_agent_host_open_through_either_api_process(
        cluster: Cluster, api: httpx.Client) -> None:
    from websockets.sync.client import unix_connect

    with servers(cluster, api, "viewer"):
        create(cluster, "viewer")
        booted(api, wait_status(api, "viewer", "ACTIVE")["id"], "the guest's boot")
        for n, kind, first in ((1, "--serial", b"boot finished"), (0, "--novnc", b"RFB 003.")):
            url = json.loads(cluster.openstack("console", "url", "show", kind, "viewer",
                                               "-f", "json", api=n).stdout)["url"]
            assert cluster.processes[f"api{n}"].url.split("//")[1] in url
            cluster.http(n).close()  # its relay socket to API process n (tests/cluster.py)
            # API process n checks the token, then relays to the agent of viewer's host.
            with unix_connect(str(cluster.root / f"api{n}.sock"), ws_url_of(url),
                              open_timeout=30, max_size=None) as ws:
                read_until(ws, first)


def test_a_stopped_agent_is_down_and_its_jobs_wait_for_it(
        cluster: Cluster, api: httpx.Client) -> None:
    with servers(cluster, api, "pinned"):
        create(cluster, "pinned")
        pinned = wait_status(api, "pinned", "ACTIVE")
        host = pinned["OS-EXT-SRV-ATTR:host"]
        cluster.processes[host].stop(signal.SIGTERM)

        def state() -> str:
            found = api.get(f"{V}/os-services", params={"host": host}).json()["services"]
            return str(found[0]["state"])

        stopped = time.monotonic()
        until(lambda: state() == "down", f"{host} down", timeout=30)
        assert time.monotonic() - stopped < 30  # service_down_time is 10 s here
        assert server(api, "pinned")["host_status"] == "DOWN"
        cluster.openstack("server", "delete", "pinned")  # a job for the stopped host
        time.sleep(3)
        assert server(api, "pinned")["OS-EXT-STS:task_state"] == "deleting"
        cluster.start_agent(int(host.removeprefix("host")))  # the job waited for it
        until(lambda: api.get(f"{V}/servers/{pinned['id']}").status_code == 404,
              "the delete job run by the restarted agent", timeout=120)
        listed = json.loads(cluster.openstack("compute", "service", "list", "--host", host,
                                              "-f", "json").stdout)
        assert listed[0]["State"] == "up"


def test_guests_on_two_hosts_talk_and_a_floating_ip_follows_its_server(
        cluster: Cluster, api: httpx.Client, tmp_path: Path) -> None:
    key = tmp_path / "key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    undo: list[tuple[str, ...]] = []  # openstack commands that remove what the test made

    def made(*args: str, then: tuple[str, ...]) -> dict[str, Any]:
        undo.append(then)
        return dict(json.loads(cluster.openstack(*args, "-f", "json").stdout))

    def in_guest(host: str, address: str, command: str) -> bool:
        """`command` run in a guest over SSH, from the host its floating IP lives on."""
        done = subprocess.run(["ip", "netns", "exec", cluster.host_ns(int(host[4:])), *SSH,
                               "-i", str(key), f"tiny@{address}", command],
                              capture_output=True, text=True, timeout=60, check=False)
        return done.returncode == 0

    try:
        made("keypair", "create", "--public-key", f"{key}.pub", "kx",
             then=("keypair", "delete", "kx"))
        made("network", "create", "netx", then=("network", "delete", "netx"))
        made("subnet", "create", "--network", "netx", "--subnet-range", "10.60.1.0/24", "subx",
             then=("subnet", "delete", "subx"))
        made("router", "create", "rx", then=("router", "delete", "rx"))
        cluster.openstack("router", "set", "--external-gateway", "public", "rx")
        cluster.openstack("router", "add", "subnet", "rx", "subx")
        undo.append(("router", "remove", "subnet", "rx", "subx"))
        made("security", "group", "create", "sgx", then=("security", "group", "delete", "sgx"))
        for protocol, port in (("tcp", "22"), ("icmp", "")):
            cluster.openstack("security", "group", "rule", "create", "--protocol", protocol,
                              *(("--dst-port", port) if port else ()), "sgx")
        group = made("server", "group", "create", "--policy", "anti-affinity", "apartx",
                     then=("server", "group", "delete", "apartx"))
        fip = json.loads(cluster.openstack("floating", "ip", "create", "public", "-f",
                                           "json").stdout)["floating_ip_address"]
        undo.append(("floating", "ip", "delete", fip))
        with servers(cluster, api, "near", "far"):
            for name in ("near", "far"):
                create(cluster, name, "--network", "netx", "--security-group", "sgx",
                       "--key-name", "kx", "--hint", f"group={group['id']}")
            near, far = (wait_status(api, n, "ACTIVE") for n in ("near", "far"))
            host, far_host = near["OS-EXT-SRV-ATTR:host"], far["OS-EXT-SRV-ATTR:host"]
            assert host != far_host
            far_ip = far["addresses"]["netx"][0]["addr"]
            assert far_ip.startswith("10.60.1."), far["addresses"]  # its port's, not QEMU's
            cluster.openstack("server", "add", "floating", "ip", "near", fip)
            # SSH on the floating IP (near's key came from its host's metadata service),
            # then ICMP and TCP to far, on another host, over VXLAN.
            until(lambda: in_guest(host, fip, "true"), "SSH to near on its floating IP", 300)
            until(lambda: in_guest(host, fip, f"ping -c 1 -W 2 {far_ip}"),
                  "near pings far on another host", 60)
            until(lambda: in_guest(host, fip, f"echo | nc -w 3 {far_ip} 22 | grep -q SSH-"),
                  "near reaches far's SSH on another host", 60)
            # The floating IP follows near to the third host (anti-affinity keeps it off
            # far's) and answers there, not on its old host.
            cluster.openstack("server", "migrate", "near")
            dest = wait_status(api, "near", "VERIFY_RESIZE")["OS-EXT-SRV-ATTR:host"]
            cluster.openstack("server", "migration", "confirm", "near")
            wait_status(api, "near", "ACTIVE")
            assert dest not in (host, far_host)
            until(lambda: in_guest(dest, fip, f"ping -c 1 -W 2 {far_ip}"),
                  "near, on its new host, pings far through its floating IP", 300)
            assert not in_guest(host, fip, "true")
    finally:
        for args in reversed(undo):
            cluster.openstack(*args, check=False)
