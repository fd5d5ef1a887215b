"""Test helpers for the bridge driver: topologies by hand, and guests as namespaces.

A "guest" here is a network namespace with one veth whose other end sits in kumo's
namespace under the port's tap name: the driver treats an existing link of that name
as the port's device, so the whole data path (bridge, nftables, dnsmasq, NAT) is the
real one, without booting QEMU. Tests that need a real guest live in tests/e2e.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from kumo.network.topology import PortPlan


def skip_unless_root_tools() -> None:
    if os.geteuid() != 0:
        pytest.skip("building network namespaces needs root")
    for tool in ("ip", "nft", "dnsmasq", "conntrack", "nsenter", "nc", "ping", "curl", "busybox"):
        if shutil.which(tool) is None and shutil.which(tool, path="/usr/sbin:/sbin") is None:
            pytest.skip(f"{tool} is not installed (make deps installs it)")


def free_external_cidr() -> str:
    """A /24 for a test's external network that no host route overlaps."""
    from kumo.network.uplink import unused_cidr

    return unused_cidr()


def new_id() -> str:
    return str(uuid.uuid4())


def sh(*argv: str, check: bool = True, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=timeout)


@dataclass
class FakeGuest:
    """A namespace standing in for a guest, wired to a port's tap name."""

    name: str
    port: PortPlan
    procs: list[subprocess.Popen[str]] = field(default_factory=list)

    def run(self, *argv: str, check: bool = False, timeout: float = 20
            ) -> subprocess.CompletedProcess[str]:
        return sh("ip", "netns", "exec", self.name, *argv, check=check, timeout=timeout)

    def start(self, *argv: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], text=True,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        """Stop the programs this guest started (listeners of an earlier test)."""
        for proc in self.procs:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(5)
        self.procs.clear()

    def ping(self, address: str) -> bool:
        return self.run("ping", "-c", "1", "-W", "1", address).returncode == 0

    def tcp(self, address: str, port: int, timeout: float = 2) -> bool:
        return self.run("nc", "-z", "-w", str(int(timeout)), address, str(port)).returncode == 0

    def configure(self, address: str, prefixlen: int, gateway: str | None) -> None:
        self.run("ip", "addr", "add", f"{address}/{prefixlen}", "dev", "eth0", check=True)
        if gateway:
            self.run("ip", "route", "add", "default", "via", gateway, check=True)


@contextlib.contextmanager
def fake_guests(kumo_ns: str, ports: list[PortPlan]) -> Iterator[dict[str, FakeGuest]]:
    """One fake guest per port (keyed by port id); all removed afterwards."""
    guests: dict[str, FakeGuest] = {}
    try:
        for port in ports:
            name = f"kg-{port.id[:8]}"
            sh("ip", "netns", "add", name)
            guest = FakeGuest(name, port)
            guests[port.id] = guest
            sh("ip", "link", "add", port.tap, "type", "veth", "peer", "name", "eth0",
               "netns", name)
            sh("ip", "link", "set", port.tap, "netns", kumo_ns)
            guest.run("ip", "link", "set", "lo", "up", check=True)
            guest.run("ip", "link", "set", "eth0", "address", port.mac, check=True)
            guest.run("ip", "link", "set", "eth0", "up", check=True)
        yield guests
    finally:
        for guest in guests.values():
            guest.stop_all()
            sh("ip", "netns", "del", guest.name, check=False)
