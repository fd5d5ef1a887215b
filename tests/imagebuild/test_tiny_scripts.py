"""The tiny image's network scripts, run on the host with `ip`/`ifconfig`/`busybox` faked.

The DHCP hook (usr/lib/tiny/udhcpc.script) with the variables busybox udhcpc sets,
and the wget wrapper (usr/bin/wget). They are POSIX sh, run here by the host's sh;
in the guest busybox's ash runs them. Booting the image on a real bridge with dnsmasq
is tests/e2e/test_tiny_network.py.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from kumo.imagebuild import tiny

SCRIPT = tiny.files_dir() / "usr/lib/tiny/udhcpc.script"
WGET = tiny.files_dir() / "usr/bin/wget"


@pytest.fixture
def fakes(tmp_path: Path) -> Path:
    """A bin folder whose ip/ifconfig/busybox/timeout print their arguments to calls.log."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("ip", "ifconfig", "busybox", "timeout"):
        fake = folder / name
        fake.write_text(f'#!/bin/sh\necho "{name} $*" >> "{tmp_path}/calls.log"\n')
        fake.chmod(0o755)
    return folder


class Hook:
    def __init__(self, tmp_path: Path, fakes: Path) -> None:
        self.tmp_path, self.fakes = tmp_path, fakes
        self.calls = tmp_path / "calls.log"
        self.resolv_conf = tmp_path / "resolv.conf"
        self.run_dir = tmp_path / "run"

    def __call__(self, event: str, **lease: str) -> list[str]:
        """Run the hook for `event` with udhcpc's variables; the commands it ran."""
        self.calls.unlink(missing_ok=True)
        env = {
            "PATH": f"{self.fakes}:{os.environ['PATH']}", "interface": "eth0",
            "TINY_RUN": str(self.run_dir), "TINY_RESOLV_CONF": str(self.resolv_conf),
            "TINY_LOG": str(self.tmp_path / "tiny.log"), **lease,
        }
        subprocess.run(["sh", str(SCRIPT), event], env=env, check=True)
        return self.calls.read_text().splitlines() if self.calls.exists() else []


@pytest.fixture
def hook(tmp_path: Path, fakes: Path) -> Hook:
    return Hook(tmp_path, fakes)


LEASE = {
    "ip": "10.0.0.5", "subnet": "255.255.255.0", "mtu": "1450", "router": "10.0.0.254",
    "staticroutes": "169.254.169.254/32 10.0.0.1 0.0.0.0/0 10.0.0.1 10.9.0.0/16 0.0.0.0",
    "dns": "10.0.0.1 10.0.0.2", "domain": "novalocal", "search": "example.test novalocal",
    "hostname": "vm-1",
}


def test_a_lease_sets_address_mtu_classless_routes_dns_and_keeps_the_host_name(
        hook: Hook) -> None:
    calls = hook("bound", **LEASE)
    assert calls == [
        "ifconfig eth0 10.0.0.5 netmask 255.255.255.0 up",
        "ip link set dev eth0 mtu 1450",
        # option 121 in the server's order; its router (option 3) is ignored (RFC 3442)
        "ip route replace 169.254.169.254/32 via 10.0.0.1 dev eth0",
        "ip route replace 0.0.0.0/0 via 10.0.0.1 dev eth0",
        "ip route replace 10.9.0.0/16 dev eth0",  # gateway 0.0.0.0: on the link
    ]
    assert hook.resolv_conf.read_text() == (
        "search example.test novalocal\nnameserver 10.0.0.1\nnameserver 10.0.0.2\n")
    assert (hook.run_dir / "eth0.ip").read_text() == "10.0.0.5\n"
    assert (hook.run_dir / "eth0.hostname").read_text() == "vm-1\n"


def test_a_renew_leaves_unchanged_routes_alone_and_replaces_changed_ones(hook: Hook) -> None:
    hook("bound", **LEASE)
    assert not [call for call in hook("renew", **LEASE) if call.startswith("ip route")]
    changed = {**LEASE, "staticroutes": "", "routes": "192.168.7.9/10.0.0.9"}
    assert [call for call in hook("renew", **changed) if call.startswith("ip route")] == [
        "ip route del 169.254.169.254/32 via 10.0.0.1 dev eth0",
        "ip route del 0.0.0.0/0 via 10.0.0.1 dev eth0",
        "ip route del 10.9.0.0/16 dev eth0",
        # without option 121: option 33 as host routes, then the router as default
        "ip route replace 192.168.7.9/32 via 10.0.0.9 dev eth0",
        "ip route replace 0.0.0.0/0 via 10.0.0.254 dev eth0",
    ]
    assert hook("deconfig") == [
        "ip route del 192.168.7.9/32 via 10.0.0.9 dev eth0",
        "ip route del 0.0.0.0/0 via 10.0.0.254 dev eth0",
        "ifconfig eth0 0.0.0.0 up",
    ]
    assert not (hook.run_dir / "eth0.ip").exists()


def test_qemu_user_networking_lease_without_mtu_router_or_dns(hook: Hook) -> None:
    """What QEMU's `restrict=on` user network gives: an address, nothing else."""
    calls = hook("bound", ip="169.254.2.15", subnet="255.255.0.0")
    assert calls == ["ifconfig eth0 169.254.2.15 netmask 255.255.0.0 up"]
    assert hook.resolv_conf.read_text() == ""


def test_a_nonsense_mtu_is_not_applied(hook: Hook) -> None:
    for mtu in ("0", "abc", "12"):
        assert not [c for c in hook("bound", ip="10.0.0.5", mtu=mtu) if "mtu" in c]


def wget(fakes: Path, *args: str) -> tuple[int, list[str], str]:
    calls = fakes.parent / "calls.log"
    calls.unlink(missing_ok=True)
    result = subprocess.run(["sh", str(WGET), *args], capture_output=True, text=True,
                            env={**os.environ, "PATH": f"{fakes}:{os.environ['PATH']}"})
    ran = calls.read_text().splitlines() if calls.exists() else []
    return result.returncode, ran, result.stderr


@pytest.mark.parametrize("args", [["-T", "5"], ["-T5"], ["--timeout=5"], ["--timeout", "5"]])
def test_wget_timeout_becomes_timeout_around_busybox_wget(fakes: Path, args: list[str]) -> None:
    status, ran, _ = wget(fakes, "-q", *args, "-O", "-", "http://example.test/")
    assert status == 0
    assert ran == ["timeout 5 busybox wget -q -O - http://example.test/"]


def test_wget_without_timeout_and_option_values_that_look_like_it(fakes: Path) -> None:
    assert wget(fakes, "-q", "-O", "-T", "http://x/")[1] == ["busybox wget -q -O -T http://x/"]
    assert wget(fakes, "--header", "--timeout=1", "http://x/")[1] == [
        "busybox wget --header --timeout=1 http://x/"]


def test_wget_refuses_a_timeout_that_is_not_a_number(fakes: Path) -> None:
    status, ran, stderr = wget(fakes, "-T", "soon", "http://x/")
    assert status == 1 and ran == []
    assert "invalid number 'soon'" in stderr
