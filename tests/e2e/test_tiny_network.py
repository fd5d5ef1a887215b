"""The tiny image on a real network: a tap on a Linux bridge, DHCP from dnsmasq (one boot).

What kumo's bridge driver gives a guest, set up by hand in a network namespace of the
test's own: a bridge (10.0.0.1/24) with the guest's tap, dnsmasq with a static lease
(address, host name), option 26 (MTU 1450), option 121 (a /32 route to the metadata
address and the default route), a DNS server that resolves `example.test`, and
169.254.169.254 answered inside the namespace. Inside the guest, as the unprivileged
`tiny` user: the MTU, routes and resolv.conf are applied; nslookup, wget by name,
ping and nc (both ways) work. Needs root (namespaces, taps).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.guests import (
    SSH_OPTIONS,
    Guest,
    MetadataEndpoint,
    TapNic,
    make_ssh_key,
    running_guest,
)

pytestmark = [
    pytest.mark.guest,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root: a network namespace, a bridge "
                       "and a tap (CI runs as root)"),
]

GATEWAY, GUEST_IP, GUEST_MAC, HOST_NAME = "10.0.0.1", "10.0.0.5", "fa:16:3e:00:00:05", "probe-1"
MTU = 1450
NC_PORT, GUEST_NC_PORT = 7000, 7001
PROBE_BODY = b"hello from the namespace\n"


@dataclass
class Lab:
    """A network namespace and the processes started in it (stopped by PID)."""

    name: str
    workdir: Path
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def netns_exec(self) -> list[str]:
        return ["ip", "netns", "exec", self.name]

    def ip(self, *words: str) -> None:
        subprocess.run(["ip", "-n", self.name, *words], check=True, capture_output=True)

    def start(self, label: str, argv: Sequence[str]) -> subprocess.Popen[bytes]:
        """A program inside the namespace, in a session of its own (its children too)."""
        log = (self.workdir / f"{label}.log").open("wb")
        process = subprocess.Popen([*self.netns_exec(), *argv], stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT,
                                   start_new_session=True)
        self.processes.append(process)
        return process

    def stop(self) -> None:
        for process in reversed(self.processes):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_for_port(lab: Lab, address: str, port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while subprocess.run([*lab.netns_exec(), "socat", "-u", "/dev/null",
                          f"TCP:{address}:{port},connect-timeout=1"],
                         capture_output=True).returncode != 0:
        if time.monotonic() > deadline:
            raise AssertionError(f"nothing listens on {address}:{port} in {lab.name}")
        time.sleep(0.1)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    for program, package in (("ip", "iproute2"), ("dnsmasq", "dnsmasq-base"),
                             ("socat", "socat")):
        if shutil.which(program) is None:
            pytest.skip(f"{program} is not installed (apt-get install {package})")
    lab = Lab(f"kumo-tinynet-{secrets.token_hex(4)}", tmp_path)
    subprocess.run(["ip", "netns", "add", lab.name], check=True)
    try:
        lab.ip("link", "set", "lo", "up")
        lab.ip("addr", "add", "169.254.169.254/32", "dev", "lo")
        lab.ip("link", "add", "br0", "type", "bridge")
        lab.ip("addr", "add", f"{GATEWAY}/24", "dev", "br0")
        lab.ip("link", "set", "br0", "up")
        lab.ip("tuntap", "add", "dev", "tap0", "mode", "tap")
        lab.ip("link", "set", "tap0", "master", "br0", "up")
        yield lab
    finally:
        lab.stop()
        subprocess.run(["ip", "netns", "delete", lab.name], check=False)


def start_dnsmasq(lab: Lab) -> None:
    """DHCP (one static lease) and DNS on br0; --user=root keeps its files in tmp_path."""
    lab.start("dnsmasq", [
        "dnsmasq", "--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv",
        "--no-hosts", "--bind-interfaces", "--interface=br0", "--user=root",
        f"--dhcp-leasefile={lab.workdir / 'leases'}", "--log-dhcp", "--log-queries",
        f"--log-facility={lab.workdir / 'dnsmasq-queries.log'}",
        f"--dhcp-range={GATEWAY},static,255.255.255.0,1h",
        f"--dhcp-host={GUEST_MAC},{GUEST_IP},{HOST_NAME}",
        f"--dhcp-option-force=26,{MTU}",
        f"--dhcp-option=121,169.254.169.254/32,{GATEWAY},0.0.0.0/0,{GATEWAY}",
        f"--dhcp-option=option:dns-server,{GATEWAY}",
        # example.test's A record; --local answers its other types (AAAA) with no data
        # rather than REFUSED (there is no upstream), which nslookup counts as a failure.
        f"--address=/example.test/{GATEWAY}", "--local=/example.test/",
    ])


def test_tiny_guest_on_a_bridge_with_dnsmasq(tiny_image: Path, lab: Lab) -> None:
    key, public_key = make_ssh_key(lab.workdir)
    # No hostname in the metadata: the guest takes the one DHCP gives.
    metadata = MetadataEndpoint(lab.workdir / "metadata.sock", {
        "/latest/meta-data/instance-id": b"i-net-probe",
        "/latest/meta-data/public-keys/0/openssh-key": public_key.encode(),
        "/probe": PROBE_BODY,
    })
    metadata.start()
    try:
        start_dnsmasq(lab)
        # One HTTP listener for 169.254.169.254 (on lo) and 10.0.0.1 (example.test).
        lab.start("http", ["socat", "TCP-LISTEN:80,reuseaddr,fork",
                           f"UNIX-CONNECT:{metadata.socket_path}"])
        received = lab.workdir / "nc-received"
        lab.start("nc-listener", ["socat", "-u", f"TCP-LISTEN:{NC_PORT},bind={GATEWAY},"
                                  "reuseaddr", f"CREATE:{received}"])
        wait_for_port(lab, GATEWAY, 80)
        nic = TapNic(lab.name, "tap0", GUEST_MAC, GUEST_IP)
        with running_guest(tiny_image, lab.workdir / "guest", nic=nic) as guest:
            ready = guest.wait_for_console("tiny: ssh ready", timeout=120)
            login = guest.wait_for_ssh(key, timeout=60)
            print(f"\ntiny on a bridge: 'ssh ready' at {ready:.1f} s, login at {login:.1f} s")
            check_guest(guest, key, lab, metadata, received)
    finally:
        metadata.stop()


def run_as_tiny(guest: Guest, key: Path, commands: dict[str, str]) -> dict[str, str]:
    """Each command's output, all in one SSH session (each login costs seconds under TCG)."""
    script = "; ".join(f"echo '### {name}'; {{ {command}; }} 2>&1 || echo '!!! failed: {name}'"
                       for name, command in commands.items())
    result = guest.ssh(key, script, timeout=90)
    assert result.returncode == 0 and "!!! failed" not in result.stdout, (
        f"{result.stdout}{result.stderr}")
    parts = result.stdout.split("### ")[1:]
    return {part.split("\n", 1)[0]: part.split("\n", 1)[1] for part in parts}


def check_guest(guest: Guest, key: Path, lab: Lab, metadata: MetadataEndpoint,
                received: Path) -> None:
    console = guest.console()
    assert f"tiny: eth0 got address {GUEST_IP} by DHCP" in console
    assert "tiny: metadata service answered" in console  # 169.254.169.254 via 10.0.0.1
    assert f"tiny: hostname is {HOST_NAME}" in console  # from DHCP: metadata gave none

    out = run_as_tiny(guest, key, {
        "who": "id -un; hostname",
        "link": "ip link show eth0",
        "routes": "ip -4 route",
        "resolv": "cat /etc/resolv.conf",
        "nslookup": "nslookup example.test",
        "wget": "wget -q -O - http://example.test/probe",
        "wget-T": "wget -q -T 10 -O - http://example.test/probe",
        "ping": "ping -c 2 -W 3 example.test",
        "nc": f"echo from-guest | nc -w 5 example.test {NC_PORT}",
    })
    assert out["who"].split() == ["tiny", HOST_NAME]
    assert f"mtu {MTU}" in out["link"]
    assert f"default via {GATEWAY} dev eth0" in out["routes"]  # option 121 (not option 3)
    assert f"169.254.169.254 via {GATEWAY} dev eth0" in out["routes"]
    assert f"nameserver {GATEWAY}" in out["resolv"].splitlines()
    assert f"Address: {GATEWAY}" in out["nslookup"]
    assert out["wget"].encode() == out["wget-T"].encode() == PROBE_BODY
    assert metadata.requests.count("/probe") == 2
    assert " 0% packet loss" in out["ping"]
    assert received.read_text() == "from-guest\n"  # nc connected out

    # nc listens too: what the namespace sends comes back through SSH's stdout.
    listener = subprocess.Popen(
        [*guest.ssh_prefix, "ssh", "-i", str(key), *SSH_OPTIONS, f"tiny@{GUEST_IP}",
         f"nc -l -p {GUEST_NC_PORT}"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 20
        while subprocess.run([*lab.netns_exec(), "socat", "-u", "-",
                              f"TCP:{GUEST_IP}:{GUEST_NC_PORT},connect-timeout=1"],
                             input=b"from-namespace\n", capture_output=True).returncode:
            assert time.monotonic() < deadline, "the guest's nc never listened"
            time.sleep(0.3)
        heard, _ = listener.communicate(timeout=20)
        assert heard == b"from-namespace\n"
    finally:
        if listener.poll() is None:
            listener.kill()
            listener.wait()

