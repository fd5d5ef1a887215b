"""Neutron with the real `openstack` CLI and openstacksdk against `kumo up`.

Networks, subnets, ports, routers and floating IPs as a user types them, then servers
on them (`--network`, `--nic`, `--port`, `server add floating ip`) with one real
guest. Subnets take ranges no route of this host overlaps (kumo refuses those).
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kumo.network.uplink import unused_cidr
from tests.conftest import KumoProcess

pytestmark = pytest.mark.e2e
OPENSTACK = str(Path(sys.executable).with_name("openstack"))


def run(kumo: KumoProcess, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([OPENSTACK, *args], env=kumo.env(), capture_output=True, text=True,
                            timeout=300)
    if check and result.returncode != 0:
        raise AssertionError(f"openstack {' '.join(args)} failed:\n{result.stderr}")
    return result


def as_json(kumo: KumoProcess, *args: str) -> Any:
    return json.loads(run(kumo, *args, "-f", "json").stdout)


def refused(kumo: KumoProcess, *args: str) -> str:
    result = run(kumo, *args, check=False)
    assert result.returncode != 0, f"openstack {' '.join(args)} should have failed"
    return result.stderr


def cidrs(count: int) -> list[str]:
    """Distinct /24s that no route of this host overlaps."""
    found: list[str] = []
    while len(found) < count:
        cidr = unused_cidr()
        if cidr not in found:
            found.append(cidr)
    return found


class Cleanup:
    """Deletes what a test made, last first, when the test failed before doing it itself
    (a test that got to its end calls `done()`: no CLI call is spent on cleaning up)."""

    def __init__(self, kumo: KumoProcess) -> None:
        self.kumo = kumo
        self.steps: list[tuple[str, ...]] = []

    def add(self, *args: str) -> None:
        self.steps.append(args)

    def done(self) -> None:
        self.steps.clear()

    def run(self) -> None:
        for args in reversed(self.steps):
            run(self.kumo, *args, check=False)


@pytest.fixture
def cleanup(kumo_up: KumoProcess) -> Iterator[Cleanup]:
    undo = Cleanup(kumo_up)
    try:
        yield undo
    finally:
        undo.run()


def test_networks_subnets_ports(kumo_up: KumoProcess, cleanup: Cleanup) -> None:
    k = kumo_up
    tag = uuid.uuid4().hex[:6]
    [cidr] = cidrs(1)
    net = as_json(k, "network", "create", "--mtu", "1400", "--description", "e2e", f"n-{tag}")
    cleanup.add("network", "delete", net["id"])
    assert (net["mtu"], net["status"], net["router:external"]) == (1400, "ACTIVE", False)
    assert refused(k, "network", "create", "--mtu", "9000", f"big-{tag}").count(
        "Requested MTU is too big, maximum is 1450")
    run(k, "network", "set", "--name", f"net-{tag}", net["id"])
    assert [n["ID"] for n in as_json(k, "network", "list", "--name", f"net-{tag}")] == [
        net["id"]]

    prefix = cidr.rsplit(".", 1)[0]
    sub = as_json(k, "subnet", "create", "--network", f"net-{tag}", "--subnet-range", cidr,
                  "--dns-nameserver", "9.9.9.9", "--allocation-pool",
                  f"start={prefix}.10,end={prefix}.100", f"s-{tag}")
    cleanup.add("subnet", "delete", sub["id"])
    assert (sub["gateway_ip"], sub["enable_dhcp"]) == (f"{prefix}.1", True)
    assert sub["allocation_pools"] == [{"start": f"{prefix}.10", "end": f"{prefix}.100"}]
    overlap = refused(k, "subnet", "create", "--network", f"net-{tag}", "--subnet-range",
                      cidr.replace("/24", "/25"), f"dup-{tag}")
    assert "overlaps with another subnet" in overlap
    assert "IPv4 only" in refused(k, "subnet", "create", "--network", f"net-{tag}",
                                  "--ip-version", "6", "--subnet-range", "fd00:e2e::/64",
                                  f"v6-{tag}")
    run(k, "subnet", "set", "--no-dhcp", "--name", f"sub-{tag}", sub["id"])
    shown = as_json(k, "subnet", "show", f"sub-{tag}")
    assert shown["enable_dhcp"] is False and shown["dns_nameservers"] == ["9.9.9.9"]

    group = as_json(k, "security", "group", "create", f"g-{tag}")
    cleanup.add("security", "group", "delete", group["id"])
    port = as_json(k, "port", "create", "--network", f"net-{tag}", "--fixed-ip",
                   f"subnet=sub-{tag},ip-address={prefix}.50", f"p-{tag}")
    cleanup.add("port", "delete", port["id"])
    assert port["fixed_ips"] == [{"subnet_id": sub["id"], "ip_address": f"{prefix}.50"}]
    assert port["mac_address"].startswith("fa:16:3e:")
    assert "is in use" in refused(k, "port", "create", "--network", f"net-{tag}",
                                  "--fixed-ip", f"ip-address={prefix}.50", f"p2-{tag}")
    run(k, "port", "set", "--security-group", group["id"], "--no-security-group", port["id"])
    assert as_json(k, "port", "show", port["id"])["security_group_ids"] == [group["id"]]
    in_use = refused(k, "network", "delete", f"net-{tag}")
    assert "There are one or more ports still in use on the network" in in_use
    run(k, "port", "delete", port["id"])
    run(k, "network", "delete", f"net-{tag}")
    run(k, "security", "group", "delete", group["id"])
    assert run(k, "network", "show", net["id"], check=False).returncode != 0
    cleanup.done()


def test_routers_and_floating_ips(kumo_up: KumoProcess, cleanup: Cleanup) -> None:
    k = kumo_up
    tag = uuid.uuid4().hex[:6]
    [cidr] = cidrs(1)
    net = as_json(k, "network", "create", f"rn-{tag}")
    cleanup.add("network", "delete", net["id"])
    sub = as_json(k, "subnet", "create", "--network", net["id"], "--subnet-range", cidr,
                  f"rs-{tag}")
    cleanup.add("subnet", "delete", sub["id"])
    port = as_json(k, "port", "create", "--network", net["id"], f"rp-{tag}")
    cleanup.add("port", "delete", port["id"])
    router = as_json(k, "router", "create", "--external-gateway", "public", f"r-{tag}")
    cleanup.add("router", "delete", router["id"])
    assert router["external_gateway_info"]["enable_snat"] is False
    fip = as_json(k, "floating", "ip", "create", "public")
    cleanup.add("floating", "ip", "delete", fip["id"])
    address = fip["floating_ip_address"]
    unreachable = refused(k, "floating", "ip", "set", "--port", port["id"], address)
    assert "is not reachable from subnet" in unreachable
    run(k, "router", "add", "subnet", f"r-{tag}", sub["id"])
    cleanup.add("router", "remove", "subnet", f"r-{tag}", sub["id"])
    interfaces = as_json(k, "router", "show", f"r-{tag}")["interfaces_info"]
    assert [i["ip_address"] for i in interfaces] == [sub["gateway_ip"]]
    prefix = cidr.rsplit(".", 1)[0]
    run(k, "router", "set", "--route", f"destination=10.250.0.0/16,gateway={prefix}.9",
        f"r-{tag}")
    assert as_json(k, "router", "show", f"r-{tag}")["routes"] == [
        {"destination": "10.250.0.0/16", "nexthop": f"{prefix}.9"}]
    run(k, "router", "unset", "--route", f"destination=10.250.0.0/16,gateway={prefix}.9",
        f"r-{tag}")
    run(k, "floating", "ip", "set", "--port", port["id"], address)
    shown = as_json(k, "floating", "ip", "show", address)
    assert (shown["port_id"], shown["fixed_ip_address"], shown["router_id"]) == (
        port["id"], port["fixed_ips"][0]["ip_address"], router["id"])
    assert "still has ports" in refused(k, "router", "delete", f"r-{tag}")
    assert "required by one or more floating IPs" in refused(
        k, "router", "remove", "subnet", f"r-{tag}", sub["id"])
    run(k, "floating", "ip", "unset", "--port", address)
    assert as_json(k, "floating", "ip", "show", address)["port_id"] is None
    run(k, "floating", "ip", "delete", address)
    run(k, "router", "remove", "subnet", f"r-{tag}", sub["id"])
    run(k, "router", "delete", f"r-{tag}")
    run(k, "port", "delete", port["id"])
    run(k, "network", "delete", net["id"])
    cleanup.done()


def test_openstacksdk(kumo_up: KumoProcess) -> None:
    import openstack
    from openstack import exceptions
    from openstack.config import loader

    region = loader.OpenStackConfig(config_files=[str(kumo_up.clouds_yaml)]).get_one("kumo")
    conn = openstack.connection.Connection(config=region)
    tag = uuid.uuid4().hex[:6]
    [cidr] = cidrs(1)
    network = conn.network.create_network(name=f"sdk-{tag}")
    try:
        subnet = conn.network.create_subnet(network_id=network.id, cidr=cidr, ip_version=4,
                                            name=f"sdk-{tag}")
        assert conn.network.find_network(f"sdk-{tag}").id == network.id
        port = conn.network.create_port(network_id=network.id, device_id=f"dev-{tag}")
        found = list(conn.network.ports(device_id=f"dev-{tag}"))
        assert [p.id for p in found] == [port.id]
        assert found[0].fixed_ips[0]["subnet_id"] == subnet.id
        with pytest.raises(exceptions.ConflictException, match="still in use"):
            conn.network.delete_network(network)
        public = conn.network.find_network("public")
        router = conn.network.create_router(name=f"sdk-{tag}",
                                            external_gateway_info={"network_id": public.id})
        conn.network.add_interface_to_router(router, subnet_id=subnet.id)
        ip = conn.network.create_ip(floating_network_id=public.id, port_id=port.id)
        assert conn.network.get_ip(ip.id).fixed_ip_address == port.fixed_ips[0]["ip_address"]
        conn.network.delete_ip(ip)
        conn.network.remove_interface_from_router(router, subnet_id=subnet.id)
        conn.network.delete_router(router)
        conn.network.delete_port(port)
    finally:
        with contextlib.suppress(exceptions.SDKException):
            conn.network.delete_network(network)
        conn.close()


@pytest.mark.guest
def test_servers_on_networks_ports_and_floating_ips(
        kumo_up: KumoProcess, cleanup: Cleanup, tiny_image: Path) -> None:
    """One real guest with three NICs: --network, --nic with a fixed IP, --port."""
    k = kumo_up
    tag = uuid.uuid4().hex[:6]
    first, second = cidrs(2)
    nets = []
    for name, cidr in ((f"a-{tag}", first), (f"b-{tag}", second)):
        nets.append(as_json(k, "network", "create", name))
        cleanup.add("network", "delete", name)
        as_json(k, "subnet", "create", "--network", name, "--subnet-range", cidr, name)
        cleanup.add("subnet", "delete", name)
    router = as_json(k, "router", "create", "--external-gateway", "public", f"r-{tag}")
    cleanup.add("router", "delete", router["id"])
    run(k, "router", "add", "subnet", f"r-{tag}", f"a-{tag}")
    cleanup.add("router", "remove", "subnet", f"r-{tag}", f"a-{tag}")
    kept = as_json(k, "port", "create", "--network", f"b-{tag}", f"kept-{tag}")
    cleanup.add("port", "delete", kept["id"])
    image = f"net-tiny-{tag}"
    run(k, "image", "create", "--file", str(tiny_image), "--disk-format", "qcow2",
        "--container-format", "bare", image)
    cleanup.add("image", "delete", image)
    fixed = second.rsplit(".", 1)[0] + ".77"
    server = as_json(k, "server", "create", "--image", image, "--flavor", "m1.tiny",
                     "--network", f"a-{tag}", "--nic", f"net-id={nets[1]['id']},v4-fixed-ip="
                     f"{fixed}", "--port", f"kept-{tag}", f"vm-{tag}")
    cleanup.add("server", "delete", "--wait", server["id"])
    ports = as_json(k, "port", "list", "--server", server["id"], "--long")
    assert len(ports) == 3 and {p["Device Owner"] for p in ports} == {"compute:nova"}
    assert fixed in json.dumps(ports)
    # `server add floating ip` tries the server's ports until one reaches the gateway.
    fip = as_json(k, "floating", "ip", "create", "public")
    cleanup.add("floating", "ip", "delete", fip["id"])
    run(k, "server", "add", "floating", "ip", f"vm-{tag}", fip["floating_ip_address"])
    attached = as_json(k, "floating", "ip", "show", fip["id"])
    assert attached["port_id"] in {p["ID"] for p in ports} and attached["port_id"] != kept["id"]
    run(k, "server", "remove", "floating", "ip", f"vm-{tag}", fip["floating_ip_address"])
    assert as_json(k, "floating", "ip", "show", fip["id"])["port_id"] is None
    networks = as_json(k, "server", "show", server["id"])["addresses"]
    assert f"a-{tag}" in networks  # user-mode networking: the first port's network name
    assert "still in use" in refused(k, "server", "create", "--image", image, "--flavor",
                                     "m1.tiny", "--port", f"kept-{tag}", f"vm2-{tag}")
    run(k, "server", "delete", "--wait", server["id"])
    after = as_json(k, "port", "show", kept["id"])
    assert (after["device_id"], after["device_owner"]) == ("", "")
    for name in (f"a-{tag}", f"b-{tag}"):  # the ports kumo made went with the server
        assert as_json(k, "port", "list", "--network", name, "--device-owner",
                       "compute:nova") == []
    for step in (("floating", "ip", "delete", fip["id"]), ("port", "delete", kept["id"]),
                 ("router", "remove", "subnet", f"r-{tag}", f"a-{tag}"),
                 ("router", "delete", router["id"]), ("image", "delete", image),
                 ("network", "delete", f"a-{tag}", f"b-{tag}")):
        run(k, *step)
    cleanup.done()
