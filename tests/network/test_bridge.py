"""The bridge driver on a real namespace: guests as namespaces on the real data path.

Two private networks on one router with an external gateway, a third network on no
router, a floating IP; security groups by hand. Each check is what a user of the
seeds expects: ICMP only once a rule allows it, TCP by port, routed traffic only
through the router, a floating IP from the host, spoofed addresses dropped, DHCP
with MTU 1450 and the metadata route. Root only (CI is root).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest

from kumo.config import Settings
from kumo.metadata.instance import InstanceView
from kumo.metadata.service import MetadataService
from kumo.network.bridge import BridgeNetworking
from kumo.network.links import bridge_mac, read_links
from kumo.network.topology import (
    FloatingPlan,
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

HOST = "testhost"


def port(network: NetworkPlan, ip: str, groups: tuple[str, ...], **extra: object) -> PortPlan:
    pid = new_id()
    mac = "fa:16:3e:" + ":".join(pid.replace("-", "")[i : i + 2] for i in (0, 2, 4))
    return PortPlan(id=pid, network_id=network.id, mac=mac,
                    ips=((network.subnets[0].id, ip),), device_owner="compute:nova",
                    device_id=new_id(), host_id=HOST, dns_name=f"vm-{ip.split('.')[-1]}",
                    security_groups=groups, **extra)  # type: ignore[arg-type]


def net(cidr: str, *, external: bool = False, dhcp: bool = True) -> NetworkPlan:
    network = ipaddress.ip_network(cidr)
    hosts = list(network.hosts())
    subnet = SubnetPlan(id=new_id(), cidr=cidr, gateway_ip=str(hosts[0]), enable_dhcp=dhcp)
    return NetworkPlan(id=new_id(), vni=0, mtu=1450 if not external else 1500,
                       external=external, admin_up=True, subnets=(subnet,),
                       dhcp_ips=((subnet.id, str(hosts[1])),) if dhcp and not external else ())


class World:
    """A topology we change step by step, applied by a real driver."""

    def __init__(self, driver: BridgeNetworking, topology: Topology) -> None:
        self.driver = driver
        self.topology = self.baseline = topology

    def apply(self, **changes: object) -> None:
        self.topology = replace(self.topology, **changes)  # type: ignore[arg-type]
        self.driver.apply(self.topology)

    def set_rules(self, group_id: str, *rules: RulePlan) -> None:
        groups = tuple(replace(g, rules=rules) if g.id == group_id else g
                       for g in self.topology.groups)
        self.apply(groups=groups)


def rule(direction: str, protocol: int | None = None, low: int | None = None,
         high: int | None = None, prefix: str | None = None,
         group: str | None = None) -> RulePlan:
    return RulePlan(id=new_id(), direction=direction, ethertype="IPv4", protocol=protocol,
                    port_min=low, port_max=high, remote_ip_prefix=prefix, remote_group_id=group)


EGRESS_ALL = rule("egress")


Guests = dict[str, FakeGuest]
Ports = dict[str, PortPlan]
ADDRESSES = {"g1": ("10.61.0.11", "10.61.0.1"), "g2": ("10.61.0.12", "10.61.0.1"),
             "g3": ("10.61.1.13", "10.61.1.1"), "g4": ("10.61.2.14", "10.61.2.1")}


@pytest.fixture(scope="module")
def plumbing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[World, Guests, Ports]]:
    """One namespace and four fake guests for the module (setting up costs seconds)."""
    skip_unless_root_tools()
    settings = Settings(data_dir=tmp_path_factory.mktemp("bridge") / "data")
    settings.network.external_cidr = free_external_cidr()
    settings.network.package_proxy = False
    driver = BridgeNetworking(settings, HOST)
    a, b, lone = net("10.61.0.0/24"), net("10.61.1.0/24"), net("10.61.2.0/24")
    ext = net(settings.network.external_cidr, external=True)
    ext_hosts = list(ipaddress.ip_network(settings.network.external_cidr).hosts())
    sg = GroupPlan(id=new_id(), stateful=True, rules=(EGRESS_ALL,))
    ports = {
        "g1": port(a, "10.61.0.11", (sg.id,)),
        "g2": port(a, "10.61.0.12", (sg.id,)),
        "g3": port(b, "10.61.1.13", (sg.id,)),
        "g4": port(lone, "10.61.2.14", (sg.id,)),
    }
    sg = replace(sg, members=tuple(sorted(ip for p in ports.values() for ip in p.addresses)))
    router = RouterPlan(
        id=new_id(), admin_up=True,
        interfaces=((a.id, a.subnets[0].cidr, "10.61.0.1"), (b.id, b.subnets[0].cidr, "10.61.1.1")),
        gateway=(ext.id, ext.subnets[0].cidr, str(ext_hosts[9])), enable_snat=True)
    topology = Topology(networks=(a, b, lone, ext), ports=tuple(ports.values()), groups=(sg,),
                        routers=(router,))
    driver.setup()
    try:
        with fake_guests(driver.ns.name, list(ports.values())) as guests:
            yield World(driver, topology), {k: guests[p.id] for k, p in ports.items()}, ports
    finally:
        driver.teardown()


@pytest.fixture
def world(plumbing: tuple[World, Guests, Ports]) -> tuple[World, Guests, Ports]:
    """The module's plumbing back at its starting topology, guests at their addresses."""
    w, guests, ports = plumbing
    w.topology = w.baseline
    w.apply()
    for name, guest in guests.items():
        guest.stop_all()
        guest.run("ip", "addr", "flush", "dev", "eth0", check=True)
        address, gateway = ADDRESSES[name]
        guest.configure(address, 24, gateway)
    return w, guests, ports


def listen(guest: FakeGuest, port: int) -> None:
    guest.start("nc", "-lk", "-p", str(port))
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        if str(port) in guest.run("ss", "-ltn").stdout:
            return
        time.sleep(0.05)
    raise AssertionError(f"nc did not listen on {port} in {guest.name}")


def test_icmp_only_once_a_rule_allows_it(world: tuple[World, Guests, Ports]) -> None:
    w, g, _ = world
    group = w.topology.groups[0].id
    assert not g["g1"].ping("10.61.0.12")
    w.set_rules(group, EGRESS_ALL, rule("ingress", protocol=1))
    assert g["g1"].ping("10.61.0.12")
    assert g["g2"].ping("10.61.0.11")
    w.set_rules(group, EGRESS_ALL)
    assert not g["g1"].ping("10.61.0.12")


def test_tcp_follows_port_rules(world: tuple[World, Guests, Ports]) -> None:
    w, g, _ = world
    group = w.topology.groups[0].id
    listen(g["g2"], 22)
    listen(g["g2"], 8080)
    assert not g["g1"].tcp("10.61.0.12", 22)
    w.set_rules(group, EGRESS_ALL, rule("ingress", protocol=6, low=22, high=22))
    assert g["g1"].tcp("10.61.0.12", 22)
    assert not g["g1"].tcp("10.61.0.12", 8080)


def test_routed_only_through_the_router(world: tuple[World, Guests, Ports]) -> None:
    w, g, _ = world
    group = w.topology.groups[0].id
    w.set_rules(group, EGRESS_ALL, rule("ingress", protocol=1))
    assert g["g3"].ping("10.61.0.11")  # b -> a through the router
    assert not g["g4"].ping("10.61.0.11")  # the lone network has no router
    assert not g["g1"].ping("10.61.2.14")


def test_remote_group_follows_membership(world: tuple[World, Guests, Ports]) -> None:
    w, g, _ = world
    group = w.topology.groups[0]
    w.set_rules(group.id, EGRESS_ALL, rule("ingress", group=group.id))
    assert g["g1"].ping("10.61.0.12")
    w.apply(groups=(replace(w.topology.groups[0],
                            members=tuple(m for m in group.members if m != "10.61.0.11")),))
    assert not g["g1"].ping("10.61.0.12")


def test_removing_a_rule_cuts_its_open_connection(world: tuple[World, Guests, Ports]) -> None:
    w, g, _ = world
    group = w.topology.groups[0].id
    w.set_rules(group, EGRESS_ALL, rule("ingress", protocol=6, low=5000, high=5000))
    server = g["g2"].start("nc", "-l", "-p", "5000")
    time.sleep(0.3)
    client = g["g1"].start("nc", "10.61.0.12", "5000")
    assert client.stdin is not None and server.stdout is not None
    client.stdin.write("hello\n")
    client.stdin.flush()
    assert server.stdout.readline() == "hello\n"
    w.set_rules(group, EGRESS_ALL)
    client.stdin.write("after\n")
    client.stdin.flush()
    time.sleep(1.5)
    conntrack = sh("ip", "netns", "exec", w.driver.ns.name, "conntrack", "-L", "-p", "tcp",
                   "--dport", "5000", check=False).stdout
    assert "ESTABLISHED" not in conntrack


def test_a_stateless_group_lets_no_reply_pass_without_a_rule(world: tuple[World, Guests, Ports]
                                                             ) -> None:
    w, g, _ = world
    group = w.topology.groups[0]
    listen(g["g2"], 8080)
    serve_8080 = rule("ingress", protocol=6, low=8080, high=8080)
    w.apply(groups=(replace(group, stateful=False, rules=(EGRESS_ALL, serve_8080)),))
    assert not g["g1"].tcp("10.61.0.12", 8080)  # g2's answer is not allowed back into g1
    any_tcp_in = rule("ingress", protocol=6)
    w.apply(groups=(replace(group, stateful=False, rules=(EGRESS_ALL, serve_8080, any_tcp_in)),))
    assert g["g1"].tcp("10.61.0.12", 8080)
    w.apply(groups=(replace(group, stateful=True, rules=(EGRESS_ALL, serve_8080)),))
    assert g["g1"].tcp("10.61.0.12", 8080)  # stateful: conntrack lets the answer in


def test_spoofed_source_is_dropped(world: tuple[World, Guests, Ports]) -> None:
    w, g, _ = world
    group = w.topology.groups[0].id
    w.set_rules(group, EGRESS_ALL, rule("ingress", protocol=1))
    g["g2"].run("ip", "addr", "flush", "dev", "eth0", check=True)
    g["g2"].configure("10.61.0.11", 24, None)  # takes g1's address
    assert not g["g2"].ping("10.61.0.1")
    g["g2"].run("ip", "addr", "flush", "dev", "eth0", check=True)
    g["g2"].configure("10.61.0.12", 24, None)
    assert g["g2"].ping("10.61.0.1")


def test_floating_ip_from_the_host(world: tuple[World, Guests, Ports]) -> None:
    w, g, ports = world
    group = w.topology.groups[0].id
    ext = next(n for n in w.topology.networks if n.external)
    fip = str(list(ipaddress.ip_network(ext.subnets[0].cidr).hosts())[19])
    listen(g["g1"], 22)
    w.set_rules(group, EGRESS_ALL, rule("ingress", protocol=6, low=22, high=22))
    w.apply(floating_ips=(FloatingPlan(id=new_id(), address=fip, network_id=ext.id,
                                       fixed_ip="10.61.0.11", port_id=ports["g1"].id,
                                       router_id=w.topology.routers[0].id),))
    with socket.create_connection((fip, 22), timeout=3):
        pass
    w.apply(floating_ips=())
    with pytest.raises(OSError):
        socket.create_connection((fip, 22), timeout=2).close()


def test_dhcp_gives_address_mtu_and_metadata_route(world: tuple[World, Guests, Ports]) -> None:
    _w, g, _ = world
    guest = g["g3"]
    guest.run("ip", "addr", "flush", "dev", "eth0", check=True)
    script = Path(__file__).with_name("udhcpc-script.sh")
    out = guest.run("busybox", "udhcpc", "-i", "eth0", "-n", "-q", "-f", "-t", "5", "-T", "1",
                    "-O", "mtu", "-O", "staticroutes", "-s", str(script), timeout=30)
    assert out.returncode == 0, out.stderr
    lease = dict(line.split("=", 1) for line in out.stdout.splitlines() if "=" in line)
    assert lease["ip"] == "10.61.1.13"
    assert lease["mtu"] == "1450"
    assert "169.254.169.254/32 10.61.1.2" in lease["staticroutes"]
    assert "0.0.0.0/0 10.61.1.1" in lease["staticroutes"]
    assert lease["dns"] == "10.61.1.2"
    assert lease["hostname"] == "vm-13"


class Views:
    """An InstanceSource over the fake guests' ports: each device id is a server."""

    def lookup(self, server_id: str) -> InstanceView | None:
        return InstanceView(uuid=server_id, name="vm", hostname="vm", project_id="p",
                            created_at=datetime.now(UTC))


@pytest.fixture
def metadata(world: tuple[World, Guests, Ports], tmp_path: Path
             ) -> Iterator[MetadataService]:
    """The real metadata service, listening on every network through the driver."""
    w, _, ports = world
    by_address = {(p.network_id, ip): p.device_id for p in ports.values() for ip in p.addresses}
    service = MetadataService(Views(), tmp_path / "run", cache_seconds=0)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(service.start(), loop).result(10)
    w.driver._metadata = lambda: service
    w.driver._resolve = lambda network_id, ip: by_address.get((network_id, ip))
    w.apply()
    try:
        yield service
    finally:
        w.driver._metadata = lambda: None
        w.driver._listening.clear()
        asyncio.run_coroutine_threadsafe(service.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)


def fetch_uuid(guest: FakeGuest) -> str:
    out = guest.run("curl", "-sf", "-m", "3",
                    "http://169.254.169.254/openstack/latest/meta_data.json")
    return str(json.loads(out.stdout)["uuid"]) if out.returncode == 0 and out.stdout else ""


def test_metadata_knows_the_guest_by_network_and_address(
        world: tuple[World, Guests, Ports], metadata: MetadataService) -> None:
    _w, g, ports = world
    for name in ("g1", "g2", "g3"):
        g[name].run("ip", "route", "add", "169.254.169.254/32", "via",
                    ADDRESSES[name][1].rsplit(".", 1)[0] + ".2", check=True)
    assert fetch_uuid(g["g1"]) == ports["g1"].device_id
    assert fetch_uuid(g["g3"]) == ports["g3"].device_id
    # g2 takes g1's address: anti-spoofing drops it, so it learns nothing of g1.
    g["g2"].run("ip", "addr", "flush", "dev", "eth0", check=True)
    g["g2"].configure("10.61.0.11", 24, None)
    g["g2"].run("ip", "route", "add", "169.254.169.254/32", "via", "10.61.0.2", check=True)
    assert fetch_uuid(g["g2"]) == ""
    assert metadata.networks.networks()  # the listeners were opened by the driver


def test_guests_reach_nothing_outside_the_cloud(world: tuple[World, Guests, Ports]) -> None:
    w, g, _ = world
    group = w.topology.groups[0].id
    w.set_rules(group, EGRESS_ALL, rule("ingress", protocol=1))
    ext = next(n for n in w.topology.networks if n.external)
    host_address = str(next(ipaddress.ip_network(ext.subnets[0].cidr).hosts()))
    router_gateway = w.topology.routers[0].gateway
    assert router_gateway is not None
    assert g["g1"].ping("10.61.0.1")  # its own router answers
    assert not g["g1"].ping(host_address)  # the host's end of the uplink does not
    assert not g["g1"].tcp(host_address, 22, timeout=1)
    assert not g["g1"].ping("192.0.2.1")


def test_the_gateway_keeps_its_mac_when_ports_change(world: tuple[World, Guests, Ports]
                                                      ) -> None:
    """A bridge with no address of its own would take its lowest port MAC: a new tap
    would change the gateway's MAC under the guests' ARP caches."""
    w, g, ports = world
    bridge = w.topology.networks[0].bridge
    wanted = bridge_mac(HOST, bridge)
    assert read_links(w.driver.ns)[bridge].mac == wanted
    tap = ports["g2"].tap
    before = read_links(w.driver.ns)[tap].mac
    try:
        w.driver.ns.ip("link", "set", tap, "address", "00:00:5e:00:53:01")  # lowest of all
        assert read_links(w.driver.ns)[bridge].mac == wanted
        assert g["g1"].ping("10.61.0.1")
        neighbour = g["g1"].run("ip", "-j", "neigh", "show", "10.61.0.1").stdout
        assert json.loads(neighbour)[0]["lladdr"] == wanted
    finally:
        w.driver.ns.ip("link", "set", tap, "address", before)
    other = bridge_mac("otherhost", bridge)
    assert other != wanted and int(other[:2], 16) & 0b11 == 0b10  # local, unicast
