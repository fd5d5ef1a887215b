"""Real guest networks with the real `openstack` CLI, as root, against `kumo up`.

What seed 001 and issue 8 ask, on three tiny guests: two networks on a router, two
servers on the first and one on the second, each reached over SSH on a floating IP.
ICMP between the first two fails until `security group rule create --protocol icmp`;
TCP follows the tcp rules; the third reaches the first through the router; every
guest's MAC and address match its port and its NIC has MTU 1450; a guest that takes
another's address learns nothing of it from the metadata service; a floating IP stops
answering once it is removed. And once on the Debian image with cloud-init (seed 004):
cloud-init points apt at the package proxy through vendor data, the guest installs a
package through it, installs it again and a tiny guest fetches it too, both from the
cache (the proxy's log shows one download from the mirror). Four guest boots in all,
in parallel. The proxy's bandwidth limit is timed in tests/network/test_proxy.py.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kumo.conformance.process import KumoProcess, start_kumo, stop_kumo
from kumo.network.bridge import RUN_ROOT
from kumo.network.netns import namespace_name

pytestmark = [pytest.mark.e2e, pytest.mark.guest]
OPENSTACK = str(Path(sys.executable).with_name("openstack"))
KUMO = str(Path(sys.executable).with_name("kumo"))
SSH = ["ssh", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
       "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "LogLevel=ERROR"]
BOOT_TIMEOUT = 600.0
FIGLET = "pool/main/f/figlet/figlet_2.2.5-3+b1_amd64.deb"


def openstack(kumo: KumoProcess, *args: str, check: bool = True
              ) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([OPENSTACK, *args], env=kumo.env(), capture_output=True, text=True,
                          timeout=300)
    if check and done.returncode != 0:
        raise AssertionError(f"openstack {' '.join(args)} failed:\n{done.stderr}")
    return done


def as_json(kumo: KumoProcess, *args: str) -> Any:
    return json.loads(openstack(kumo, *args, "-f", "json").stdout)


class Guest:
    def __init__(self, name: str, key: Path, user: str = "tiny") -> None:
        self.name = name
        self.key = key
        self.user = user
        self.id = ""
        self.fixed = ""
        self.floating = ""
        self.mac = ""
        self.port = ""

    def ssh(self, command: str, timeout: float = 60, check: bool = True
            ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*SSH, "-i", str(self.key), f"{self.user}@{self.floating}", command],
                              capture_output=True, text=True, timeout=timeout)
        if check and done.returncode != 0:
            raise AssertionError(f"{self.name}: {command!r} failed ({done.returncode}):\n"
                                 f"{done.stdout}{done.stderr}")
        return done

    def reaches(self, command: str) -> bool:
        return self.ssh(command, check=False).returncode == 0


def wait_until(predicate: Any, timeout: float, what: str) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what}: not within {timeout:.0f} s")
        time.sleep(0.1)
    return time.monotonic() - started


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory, tiny_image: Path, debian_image: Path
          ) -> Iterator[tuple[KumoProcess, dict[str, Guest]]]:
    if os.geteuid() != 0:
        pytest.skip("real guest networks need root (kumo's network namespace)")
    work = tmp_path_factory.mktemp("networks")
    kumo = start_kumo(work / "data", ("--no-user-config",), network="bridge")
    guests: dict[str, Guest] = {}
    try:
        key = work / "key"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)],
                       check=True)
        openstack(kumo, "image", "create", "--disk-format", "qcow2", "--container-format",
                  "bare", "--public", "--file", str(tiny_image), "tiny")
        openstack(kumo, "image", "create", "--disk-format", "qcow2", "--container-format",
                  "bare", "--file", str(debian_image), "debian")
        openstack(kumo, "flavor", "create", "--vcpus", "1", "--ram", "768", "--disk", "4", "d1")
        openstack(kumo, "keypair", "create", "--public-key", f"{key}.pub", "k1")
        for net, cidr in (("net1", "10.50.1.0/24"), ("net2", "10.50.2.0/24")):
            openstack(kumo, "network", "create", net)
            openstack(kumo, "subnet", "create", "--network", net, "--subnet-range", cidr,
                      f"sub-{net}")
        openstack(kumo, "router", "create", "r1")
        openstack(kumo, "router", "set", "--external-gateway", "public", "r1")
        openstack(kumo, "router", "add", "subnet", "r1", "sub-net1")
        openstack(kumo, "router", "add", "subnet", "r1", "sub-net2")
        openstack(kumo, "security", "group", "create", "sg1")
        openstack(kumo, "security", "group", "rule", "create", "--protocol", "tcp",
                  "--dst-port", "22", "sg1")
        for name, net, image, flavor in (("deb", "net1", "debian", "d1"),
                                         ("vm1", "net1", "tiny", "m1.tiny"),
                                         ("vm2", "net1", "tiny", "m1.tiny"),
                                         ("vm3", "net2", "tiny", "m1.tiny")):
            guests[name] = Guest(name, key, "debian" if image == "debian" else "tiny")
            guests[name].id = as_json(kumo, "server", "create", "--image", image, "--flavor",
                                      flavor, "--key-name", "k1", "--network", net,
                                      "--security-group", "sg1", name)["id"]
        for guest in guests.values():
            wait_until(lambda g=guest: as_json(kumo, "server", "show", g.id)["status"]
                       in ("ACTIVE", "ERROR"), BOOT_TIMEOUT, f"{guest.name} ACTIVE")
            shown = as_json(kumo, "server", "show", guest.id)
            assert shown["status"] == "ACTIVE", shown.get("fault")
            port = as_json(kumo, "port", "list", "--server", guest.id)[0]
            guest.port, guest.mac = port["ID"], port["MAC Address"]
            guest.fixed = port["Fixed IP Addresses"][0]["ip_address"]
            fip = as_json(kumo, "floating", "ip", "create", "public")
            guest.floating = fip["floating_ip_address"]
            openstack(kumo, "server", "add", "floating", "ip", guest.id, guest.floating)
        for guest in guests.values():
            wait_until(lambda g=guest: g.reaches("true"), BOOT_TIMEOUT,
                       f"SSH to {guest.name} on {guest.floating}")
        yield kumo, guests
    finally:
        for guest in guests.values():
            if guest.id:
                openstack(kumo, "server", "delete", "--wait", guest.id, check=False)
        stop_kumo(kumo)


def test_mac_address_and_mtu_match_the_port(cloud: tuple[KumoProcess, dict[str, Guest]]) -> None:
    kumo, guests = cloud
    for guest in guests.values():
        nic = guest.ssh("ip -o link | grep -v ' lo:' | cut -d: -f2 | head -1").stdout.strip()
        assert guest.ssh(f"cat /sys/class/net/{nic}/address").stdout.strip() == guest.mac
        assert guest.ssh(f"cat /sys/class/net/{nic}/mtu").stdout.strip() == "1450"
        assert f"inet {guest.fixed}/24" in guest.ssh(f"ip -4 addr show dev {nic}").stdout
        addresses = as_json(kumo, "server", "show", guest.id)["addresses"]
        listed = json.dumps(addresses)
        assert guest.fixed in listed and guest.floating in listed


def test_icmp_only_once_the_rule_exists(cloud: tuple[KumoProcess, dict[str, Guest]]) -> None:
    kumo, guests = cloud
    vm1, vm2 = guests["vm1"], guests["vm2"]
    assert not vm1.reaches(f"ping -c 1 -W 2 {vm2.fixed}")
    openstack(kumo, "security", "group", "rule", "create", "--protocol", "icmp", "sg1")
    took = wait_until(lambda: vm1.reaches(f"ping -c 1 -W 1 {vm2.fixed}"), 30, "ICMP allowed")
    assert took < 10
    assert vm2.reaches(f"ping -c 1 -W 2 {vm1.fixed}")


def test_tcp_follows_the_tcp_rules(cloud: tuple[KumoProcess, dict[str, Guest]]) -> None:
    kumo, guests = cloud
    vm1, vm2 = guests["vm1"], guests["vm2"]
    # busybox nc: -ll with -e keeps serving, one `hello` per connection
    vm2.ssh("printf '#!/bin/sh\\necho hello\\n' > /tmp/hello && chmod +x /tmp/hello && "
            "(nc -ll -p 8080 -e /tmp/hello </dev/null >/dev/null 2>&1 &)")
    time.sleep(1)
    assert not vm1.reaches(f"echo | nc -w 2 {vm2.fixed} 8080 | grep -q hello")
    openstack(kumo, "security", "group", "rule", "create", "--protocol", "tcp",
              "--dst-port", "8080", "sg1")
    wait_until(lambda: vm1.reaches(f"echo | nc -w 2 {vm2.fixed} 8080 | grep -q hello"), 30,
               "TCP 8080 allowed")
    assert not vm1.reaches(f"echo | nc -w 2 {vm2.fixed} 8081")


def test_the_other_network_through_the_router(cloud: tuple[KumoProcess, dict[str, Guest]]
                                              ) -> None:
    kumo, guests = cloud
    vm1, vm3 = guests["vm1"], guests["vm3"]
    openstack(kumo, "security", "group", "rule", "create", "--protocol", "icmp", "sg1",
              check=False)  # may exist from the ICMP test
    wait_until(lambda: vm3.reaches(f"ping -c 1 -W 1 {vm1.fixed}"), 30, "vm3 -> vm1 routed")
    route = vm3.ssh("ip route").stdout
    assert "default via 10.50.2.1" in route


def test_a_spoofed_address_gets_no_metadata(cloud: tuple[KumoProcess, dict[str, Guest]]
                                            ) -> None:
    _kumo, guests = cloud
    vm1, vm2 = guests["vm1"], guests["vm2"]
    own = vm2.ssh("wget -q -O - http://169.254.169.254/openstack/latest/meta_data.json").stdout
    assert json.loads(own)["uuid"] == vm2.id
    script = (
        "exec >/tmp/spoof.log 2>&1\n"
        "sudo ip addr flush dev eth0\n"
        f"sudo ip addr add {vm1.fixed}/24 dev eth0\n"
        "sudo ip route add 169.254.169.254/32 via 10.50.1.2 dev eth0\n"
        "timeout 5 wget -q -O /tmp/spoof.json "
        "http://169.254.169.254/openstack/latest/meta_data.json; echo wget=$?\n"
        "sudo ip addr flush dev eth0\n"
        f"sudo ip addr add {vm2.fixed}/24 dev eth0\n"
        "sudo ip route add default via 10.50.1.1 dev eth0\n"
        "sudo ip route add 169.254.169.254/32 via 10.50.1.2 dev eth0\n"
        "echo restored\n"
    )
    vm2.ssh(f"cat > /tmp/spoof.sh <<'EOF'\n{script}EOF\n"
            "(sh /tmp/spoof.sh </dev/null >/dev/null 2>&1 &)")
    wait_until(lambda: "restored" in vm2.ssh("cat /tmp/spoof.log", check=False).stdout, 60,
               "the spoofing script")
    log = vm2.ssh("cat /tmp/spoof.log").stdout
    assert "wget=0" not in log, log
    leaked = vm2.ssh("cat /tmp/spoof.json 2>/dev/null", check=False).stdout
    assert vm1.id not in leaked


def test_floating_ip_from_the_host_until_removed(cloud: tuple[KumoProcess, dict[str, Guest]]
                                                 ) -> None:
    kumo, guests = cloud
    vm3 = guests["vm3"]
    with socket.create_connection((vm3.floating, 22), timeout=5) as conn:
        conn.settimeout(5)
        assert conn.recv(4) == b"SSH-"
    openstack(kumo, "server", "remove", "floating", "ip", vm3.id, vm3.floating)

    def closed() -> bool:
        try:
            socket.create_connection((vm3.floating, 22), timeout=1).close()
        except OSError:
            return True
        return False

    wait_until(closed, 10, "floating IP removed")


def test_debian_installs_through_the_caching_proxy(cloud: tuple[KumoProcess, dict[str, Guest]]
                                                   ) -> None:
    kumo, guests = cloud
    deb, vm1 = guests["deb"], guests["vm1"]
    deb.ssh("cloud-init status --wait", timeout=600)
    proxy = deb.ssh("cat /etc/apt/apt.conf.d/90cloud-init-aptproxy").stdout
    assert 'Acquire::http::Proxy "http://10.50.1.2:3142"' in proxy  # from vendor data
    deb.ssh("sudo apt-get update -q", timeout=600)
    deb.ssh("sudo apt-get install -y -q figlet && figlet ok", timeout=300)
    deb.ssh("sudo apt-get purge -y -q figlet && sudo apt-get clean && "
            "sudo apt-get install -y -q figlet", timeout=300)
    vm1.ssh(f"http_proxy=http://10.50.1.2:3142 wget -q -O /tmp/figlet.deb "
            f"http://deb.debian.org/debian/{FIGLET}", timeout=120)
    log = RUN_ROOT / namespace_name(kumo.data_dir) / "proxy" / "log" / "apt-cacher.log"
    entries = [line.split("|") for line in log.read_text().splitlines()]
    fetched = [e for e in entries if e[1] == "I" and e[4].endswith(FIGLET)]
    served = [e[3] for e in entries if e[1] == "O" and e[4].endswith(FIGLET)]
    assert len(fetched) == 1, entries  # one download from the mirror, then the cache
    assert sorted(served) == sorted([deb.fixed, deb.fixed, vm1.fixed]), entries
