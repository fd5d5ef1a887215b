"""Networks across hosts: the VXLAN plan, and two real hosts (namespaces) joined by it.

The two-host test runs two bridge drivers, each from its own "host" namespace (as
`kumo agent` runs on its host), joined by a veth underlay; the guests are namespaces
on the ports' taps (tests/network/plumbing.py). Root only (CI is root).
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from kumo.config import Settings
from kumo.network import vxlan
from kumo.network.bridge import BridgeNetworking
from kumo.network.netns import Namespace
from kumo.network.topology import (
    GroupPlan,
    NetworkPlan,
    PortPlan,
    RouterPlan,
    RulePlan,
    SubnetPlan,
    Topology,
)
from tests.network.plumbing import (
    FakeGuest,
    fake_guests,
    free_external_cidr,
    new_id,
    sh,
    skip_unless_root_tools,
)

UNDERLAY = {"ha": "10.252.0.1", "hb": "10.252.0.2"}


def network(cidr: str = "10.62.0.0/24", *, vni: int = 1001, external: bool = False
            ) -> NetworkPlan:
    base = cidr.rsplit(".", 1)[0]
    subnet = SubnetPlan(id=new_id(), cidr=cidr, gateway_ip=f"{base}.1", enable_dhcp=True)
    return NetworkPlan(id=new_id(), vni=vni, mtu=1450, external=external, admin_up=True,
                       subnets=(subnet,), dhcp_ips=((subnet.id, f"{base}.2"),))


def port(net: NetworkPlan, ip: str, host: str, groups: tuple[str, ...] = ()) -> PortPlan:
    pid = new_id()
    mac = "fa:16:3e:" + ":".join(pid.replace("-", "")[i : i + 2] for i in (0, 2, 4))
    return PortPlan(id=pid, network_id=net.id, mac=mac, ips=((net.subnets[0].id, ip),),
                    device_owner="compute:nova", device_id=new_id(), host_id=host,
                    dns_name=f"vm-{ip.split('.')[-1]}", security_groups=groups)


# -- the plan --------------------------------------------------------------------------

def test_one_host_alone_builds_no_tunnel() -> None:
    net = network()
    topology = Topology(networks=(net,), ports=(port(net, "10.62.0.10", "ha"),),
                        tunnels=(("ha", UNDERLAY["ha"]),))
    assert vxlan.plan(topology, "ha") == {}
    # a host that has not registered an address builds none either
    assert vxlan.plan(replace(topology, tunnels=(("hb", UNDERLAY["hb"]),)), "ha") == {}


def test_each_tenant_network_floods_to_every_other_host_and_knows_remote_ports() -> None:
    net, other, ext = network(), network("10.62.1.0/24", vni=1002), network(
        "172.30.0.0/24", vni=1003, external=True)
    mine, theirs, unbound = (port(net, "10.62.0.10", "ha"), port(net, "10.62.0.11", "hb"),
                             port(net, "10.62.0.12", ""))
    topology = Topology(networks=(net, other, ext), ports=(mine, theirs, unbound),
                        tunnels=(("ha", UNDERLAY["ha"]), ("hb", UNDERLAY["hb"]),
                                 ("hc", "10.252.0.3")))
    segments = vxlan.plan(topology, "ha")
    assert sorted(segments) == ["vxlan-1001", "vxlan-1002"]  # the external one stays local
    first = segments["vxlan-1001"]
    assert (first.bridge, first.mtu, first.local) == (net.bridge, 1450, UNDERLAY["ha"])
    assert first.entries == {(vxlan.FLOOD, UNDERLAY["hb"]), (vxlan.FLOOD, "10.252.0.3"),
                             (theirs.mac, UNDERLAY["hb"])}
    assert segments["vxlan-1002"].entries == {(vxlan.FLOOD, UNDERLAY["hb"]),
                                              (vxlan.FLOOD, "10.252.0.3")}


# -- two hosts -------------------------------------------------------------------------

class Host:
    """A host namespace with kumo's bridge driver run from inside it, as an agent's."""

    def __init__(self, name: str, root: Path, tag: str) -> None:
        self.name = name
        self.ns = Namespace(f"kv-{tag}-{name}")
        settings = Settings(data_dir=root / name)
        settings.network.external_cidr = free_external_cidr()
        settings.network.package_proxy = False
        self.driver = BridgeNetworking(settings, name)

    def apply(self, topology: Topology) -> None:
        self.ns.call(lambda: self.driver.apply(topology))

    def entries(self, device: str) -> set[tuple[str, str]]:
        return vxlan.read_entries(self.driver.ns).get(device, set())


@pytest.fixture(scope="module")
def hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Host]]:
    skip_unless_root_tools()
    tag = new_id()[:4]
    made = {name: Host(name, tmp_path_factory.mktemp("vxlan"), tag) for name in UNDERLAY}
    try:
        for host in made.values():
            sh("ip", "netns", "add", host.ns.name)
            sh("ip", "-n", host.ns.name, "link", "set", "lo", "up")
        a, b = made["ha"].ns.name, made["hb"].ns.name
        sh("ip", "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0",
           "netns", b)
        for name, host in made.items():
            sh("ip", "-n", host.ns.name, "addr", "add", f"{UNDERLAY[name]}/24", "dev", "eth0")
            sh("ip", "-n", host.ns.name, "link", "set", "eth0", "up")
            host.ns.call(host.driver.setup)
        yield made
    finally:
        for host in made.values():
            host.ns.call(host.driver.teardown)
            sh("ip", "netns", "del", host.ns.name, check=False)


ICMP_IN = RulePlan(id=new_id(), direction="ingress", ethertype="IPv4", protocol=1)
EGRESS = RulePlan(id=new_id(), direction="egress", ethertype="IPv4", protocol=None)


def test_guests_on_two_hosts_share_one_network(hosts: dict[str, Host]) -> None:
    net, net2 = network(), network("10.62.1.0/24", vni=1002)
    group = GroupPlan(id=new_id(), stateful=True, rules=(ICMP_IN, EGRESS))
    on_a, on_b = port(net, "10.62.0.10", "ha", (group.id,)), port(net, "10.62.0.11", "hb",
                                                                   (group.id,))
    on_c = port(net2, "10.62.1.12", "hb", (group.id,))  # on the router's other network
    router = RouterPlan(id=new_id(), admin_up=True,
                        interfaces=((net.id, net.subnets[0].cidr, "10.62.0.1"),
                                    (net2.id, net2.subnets[0].cidr, "10.62.1.1")))
    topology = Topology(networks=(net, net2), ports=(on_a, on_b, on_c), groups=(group,),
                        routers=(router,), tunnels=tuple(UNDERLAY.items()))
    a, b = hosts["ha"], hosts["hb"]
    with fake_guests(a.driver.ns.name, [on_a]) as in_a, \
            fake_guests(b.driver.ns.name, [on_b, on_c]) as in_b:
        ga, gb, gc = in_a[on_a.id], in_b[on_b.id], in_b[on_c.id]
        threads = [threading.Thread(target=h.apply, args=(topology,)) for h in (a, b)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for guest, ip in ((ga, "10.62.0.10"), (gb, "10.62.0.11"), (gc, "10.62.1.12")):
            guest.configure(ip, 24, ip.rsplit(".", 1)[0] + ".1")

        # Forwarding entries from the plan: flood to the other host, the remote port's MAC
        assert a.entries("vxlan-1001") == {(vxlan.FLOOD, UNDERLAY["hb"]),
                                           (on_b.mac, UNDERLAY["hb"])}
        assert ga.ping("10.62.0.11") and gb.ping("10.62.0.10")
        # Routed between the router's networks, each host routing its own guests'
        # packets (the router's addresses are on every host), through the tunnel.
        assert ga.ping("10.62.1.12") and gc.ping("10.62.0.10")
        # TCP by the rules of the destination's host; the reply crosses back on conntrack
        gc.start("nc", "-lk", "-p", "8080")
        time.sleep(0.5)
        assert not ga.tcp("10.62.1.12", 8080)
        tcp_in = RulePlan(id=new_id(), direction="ingress", ethertype="IPv4", protocol=6,
                          port_min=8080, port_max=8080)
        topology = replace(topology, groups=(replace(group, rules=(*group.rules, tcp_in)),))
        for host in (a, b):
            host.apply(topology)
        assert ga.tcp("10.62.1.12", 8080)

        # Each host answers its own guests: DHCP leases for its ports only (the other
        # host's dnsmasq never hears the guest), and the DHCP and router addresses (the
        # same on both hosts) from the guest's own host.
        assert (dhcp_hosts(a, net), dhcp_hosts(b, net)) == ({on_a.id}, {on_b.id})
        for guest, here, there in ((ga, a, b), (gb, b, a)):
            assert lease(guest) == guest.port.addresses[0]
            assert guest.port.mac in dhcp_log(here, net)
            assert guest.port.mac not in dhcp_log(there, net)
        for guest, host in ((ga, a), (gb, b)):
            assert arp_replies(guest, "10.62.0.2") == [bridge_mac(host, net)]
            assert arp_replies(guest, "10.62.0.1") == [bridge_mac(host, net)]  # the router

        # A port that moves (a migration) moves its entry on the other host
        moved = replace(topology, ports=(on_a, replace(on_b, host_id="ha")))
        a.apply(moved)
        assert a.entries("vxlan-1001") == {(vxlan.FLOOD, UNDERLAY["hb"])}
        # and when the other host goes, so does the tunnel
        a.apply(replace(moved, tunnels=(("ha", UNDERLAY["ha"]),)))
        assert "vxlan-1001" not in sh("ip", "-n", a.driver.ns.name, "link", "show").stdout


def dhcp_hosts(host: Host, net: NetworkPlan) -> set[str]:
    return {p.name for p in (host.driver.run_dir / "dhcp" / net.id / "hosts").iterdir()}


def lease(guest: FakeGuest) -> str:
    """The address DHCP offers the guest (busybox udhcpc; the guest keeps its own)."""
    script = Path(__file__).with_name("udhcpc-script.sh")
    out = guest.run("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1",
                    "-s", str(script), timeout=30)
    assert out.returncode == 0, out.stderr
    return dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)["ip"]


def dhcp_log(host: Host, net: NetworkPlan) -> str:
    return (host.driver.run_dir / "dhcp" / net.id / "dnsmasq.log").read_text()


def arp_replies(guest: FakeGuest, ip: str) -> list[str]:
    """The MACs that answer one ARP request for `ip` within a second."""
    out = guest.run("busybox", "arping", "-c", "1", "-w", "1", "-I", "eth0", ip).stdout
    return re.findall(r"\[([0-9a-f:]{17})\]", out.lower())


def bridge_mac(host: Host, net: NetworkPlan) -> str:
    shown = json.loads(sh("ip", "-j", "-n", host.driver.ns.name, "link", "show",
                          net.bridge).stdout)
    return str(shown[0]["address"])
