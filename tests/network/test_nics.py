"""Compute's use of ports: server create's networks, NIC order, binding, addresses,
metadata, release at delete, and Nova's errors."""

from __future__ import annotations

import json
from dataclasses import replace
from types import SimpleNamespace
from typing import Any, cast

from starlette.testclient import TestClient

from kumo.compute.instance_source import ServerInstanceSource
from kumo.compute.service import ComputeService
from kumo.db.engine import session_scope
from kumo.metadata.trees import Defaults, network_data_json
from kumo.network import nics
from kumo.runtime import Runtime
from tests.compute.conftest import IMAGE_ID
from tests.compute.fakes import FakeHypervisor
from tests.compute.test_routes import V, boot, mv, show
from tests.network.conftest import Neutron, RecordingDriver
from tests.network.test_routers import public_id


def create(api: TestClient, headers: dict[str, str], networks: Any, status: int,
           version: str = "2.96", **extra: Any) -> dict[str, Any]:
    body = {"server": {"name": "vm", "imageRef": IMAGE_ID, "flavorRef": "1", **extra}}
    if networks is not None:
        body["server"]["networks"] = networks
    response = api.post(f"{V}/servers", json=body, headers=mv(headers, version))
    assert response.status_code == status, response.text
    return dict(response.json())


def delete_server(api: TestClient, headers: dict[str, str], compute: ComputeService,
                  server_id: str) -> None:
    assert api.delete(f"{V}/servers/{server_id}", headers=headers).status_code == 204
    compute.wait_idle()


def test_several_nics_in_order_bound_and_released(
        api: TestClient, admin_headers: dict[str, str], admin: Neutron, compute: ComputeService,
        hypervisor: FakeHypervisor, runtime: Runtime, bridge: RecordingDriver) -> None:
    one = admin.network("one", "10.100.0.0/24")
    two = admin.network("two", "10.101.0.0/24")
    mine = admin.post("ports", network_id=two["id"], name="kept")
    server = boot(api, admin_headers, compute, name="Multi NIC", networks=[
        {"uuid": one["id"]}, {"uuid": two["id"], "fixed_ip": "10.101.0.77"},
        {"port": mine["id"]}])
    ports = admin.list("ports", f"device_id={server['id']}")
    assert {p["device_owner"] for p in ports} == {"compute:nova"}
    assert {p["dns_name"] for p in ports} == {"multi-nic"}
    with session_scope(runtime.sessions) as session:
        order = nics.server_nics(session, server["id"])
    assert [n.network_name for n in order] == ["one", "two", "two"]
    assert order[1].fixed_ips[0].ip_address == "10.101.0.77" and order[2].port_id == mine["id"]
    assert order[0].tap == "tap" + order[0].port_id[:11] and order[0].mtu == 1450
    assert order[0].fixed_ips[0].dhcp_server == "10.100.0.2"
    # Spawning bound them to this host, the driver built them before QEMU started, and
    # QEMU got them as tap NICs in the server's order.
    assert {p["binding:host_id"] for p in admin.list("ports", f"device_id={server['id']}")} == {
        compute.host}
    assert {p.id for p in bridge.applied[-1].guest_ports(compute.host)} == {
        n.port_id for n in order}
    spec = hypervisor.guests[server["id"]].spec
    assert spec.netns == "kumo-test"
    assert [(n.port_id, n.mac, n.tap, n.mtu) for n in spec.nics] == [
        (n.port_id, n.mac, n.tap, n.mtu) for n in order]
    assert {p["status"] for p in admin.list("ports", f"device_id={server['id']}")} == {
        "ACTIVE"}
    shown = show(api, admin_headers, server["id"])
    assert [a["addr"] for a in shown["addresses"]["two"]] == [
        "10.101.0.77", mine["fixed_ips"][0]["ip_address"]]
    assert shown["addresses"]["one"][0] == {
        "version": 4, "addr": order[0].fixed_ips[0].ip_address, "OS-EXT-IPS:type": "fixed",
        "OS-EXT-IPS-MAC:mac_addr": order[0].mac}
    delete_server(api, admin_headers, compute, server["id"])
    left = admin.list("ports", "device_owner=&fields=id&fields=device_id&fields=name")
    assert left == [{"id": mine["id"], "device_id": "", "name": "kept"}]  # only --port stays
    assert admin.get("ports", mine["id"])["binding:host_id"] == ""
    admin.call("DELETE", f"ports/{mine['id']}", expect=204)
    for net in (one, two):
        admin.call("DELETE", f"networks/{net['id']}", expect=204)


def test_novas_errors(api: TestClient, admin_headers: dict[str, str], admin: Neutron,
                      make_neutron: Any, make_project_user: Any,
                      compute: ComputeService) -> None:
    net = admin.network("n", "10.102.0.0/24")
    bare = admin.post("networks", name="no-subnet")
    missing = "11111111-2222-4333-8444-000000000000"
    error = create(api, admin_headers, [{"uuid": missing}], 400)
    assert error == {"badRequest": {"code": 400,
                                    "message": f"Network {missing} could not be found."}}
    assert "not in proper format" in create(api, admin_headers, [{"uuid": "net"}], 400)[
        "badRequest"]["message"]
    assert "requires a subnet" in create(api, admin_headers, [{"uuid": bare["id"]}], 400)[
        "badRequest"]["message"]
    port = admin.post("ports", network_id=net["id"], device_id="someone-else")
    assert create(api, admin_headers, [{"port": port["id"]}], 409)["conflictingRequest"][
        "message"] == f"Port {port['id']} is still in use."
    ip = port["fixed_ips"][0]["ip_address"]
    assert create(api, admin_headers, [{"uuid": net["id"], "fixed_ip": ip}], 400)[
        "badRequest"]["message"] == f"Fixed IP address {ip} is already in use on instance " \
                                    "someone-else."
    twice = create(api, admin_headers, [{"port": port["id"]}, {"port": port["id"]}], 400)
    assert "was specified twice" in twice["badRequest"]["message"]
    assert "'networks' is a required property" in create(api, admin_headers, None, 400)[
        "badRequest"]["message"]
    member = make_project_user("p-carol", "carol")
    public = public_id(admin)
    assert create(api, member, [{"uuid": public}], 403)["forbidden"]["message"] == \
        f"It is not allowed to create an interface on external network {public}"
    assert create(api, member, [{"uuid": net["id"]}], 400)["badRequest"]["message"] == \
        f"Network {net['id']} could not be found."  # another project's private network
    # Nothing was left behind by the refused requests.
    assert len(admin.list("ports", f"network_id={net['id']}")) == 2  # DHCP + `port`
    admin.call("DELETE", f"ports/{port['id']}", expect=204)
    for made in (net, bare):
        admin.call("DELETE", f"networks/{made['id']}", expect=204)


def test_none_full_network_and_ambiguity(api: TestClient, admin_headers: dict[str, str],
                                         admin: Neutron, compute: ComputeService) -> None:
    tiny = admin.network("tiny", "10.103.0.0/30")  # .1 gateway, .2 DHCP: no room
    no_nic = boot(api, admin_headers, compute, name="none", networks="none")
    assert admin.list("ports", f"device_id={no_nic['id']}") == []
    full = create(api, admin_headers, [{"uuid": tiny["id"]}], 202)["server"]
    compute.wait_idle()
    shown = show(api, admin_headers, full["id"])
    assert shown["status"] == "ERROR"
    assert shown["fault"]["message"] == f"No fixed IP addresses available for network: " \
                                        f"{tiny['id']}"
    assert admin.list("ports", f"device_id={full['id']}") == []
    other = admin.network("other", "10.104.0.0/24")
    ambiguous = create(api, admin_headers, "auto", 409)
    assert ambiguous["conflictingRequest"]["message"] == (
        "Multiple possible networks found, use a Network ID to be more specific.")
    for server in (no_nic, full):
        delete_server(api, admin_headers, compute, server["id"])
    for net in (tiny, other):
        admin.call("DELETE", f"networks/{net['id']}", expect=204)


def test_port_groups_decide_forwards_and_shown_groups(
        api: TestClient, admin_headers: dict[str, str], admin: Neutron,
        compute: ComputeService, hypervisor: FakeHypervisor) -> None:
    web = admin.post("security-groups", name="web")
    admin.post("security-group-rules", security_group_id=web["id"], direction="ingress",
               protocol="tcp", port_range_min=80, port_range_max=80)
    server = boot(api, admin_headers, compute, name="web1")
    assert hypervisor.guests[server["id"]].ports == {}
    [port] = admin.list("ports", f"device_id={server['id']}")
    admin.put("ports", port["id"], security_groups=[web["id"]])
    compute.wait_idle()
    assert set(hypervisor.guests[server["id"]].ports) == {"tcp/80"}
    assert show(api, admin_headers, server["id"])["security_groups"] == [{"name": "web"}]
    # User-mode: the guest's NIC is QEMU's, whatever the port says.
    addresses = show(api, admin_headers, server["id"])["addresses"]
    assert addresses == {"private": [
        {"version": 4, "addr": "169.254.2.15", "OS-EXT-IPS:type": "fixed",
         "OS-EXT-IPS-MAC:mac_addr": "52:54:00:12:34:56"},
        {"version": 4, "addr": "127.0.0.1", "OS-EXT-IPS:type": "floating",
         "OS-EXT-IPS-MAC:mac_addr": "52:54:00:12:34:56"}]}
    delete_server(api, admin_headers, compute, server["id"])
    admin.call("DELETE", f"security-groups/{web['id']}", expect=204)


def test_floating_ip_and_metadata_on_real_networks(
        api: TestClient, admin_headers: dict[str, str], admin: Neutron,
        compute: ComputeService, runtime: Runtime, bridge: RecordingDriver) -> None:
    net = admin.network("meta", "10.105.0.0/24")
    admin.put("subnets", net["subnet"]["id"], dns_nameservers=["9.9.9.9"], host_routes=[
        {"destination": "10.200.0.0/16", "nexthop": "10.105.0.9"}])
    router = admin.post("routers", name="r", external_gateway_info={
        "network_id": public_id(admin)})
    admin.call("PUT", f"routers/{router['id']}/add_router_interface",
               {"subnet_id": net["subnet"]["id"]}, expect=200)
    server = boot(api, admin_headers, compute, name="meta", networks=[{"uuid": net["id"]}])
    # What `openstack server add floating ip` does: the server's ports, then the FIP.
    [port] = admin.list("ports", f"device_id={server['id']}")
    fip = admin.post("floatingips", floating_network_id=public_id(admin))
    admin.put("floatingips", fip["id"], port_id=port["id"])
    fixed = port["fixed_ips"][0]["ip_address"]
    shown = show(api, admin_headers, server["id"])["addresses"]["meta"]
    assert [(a["addr"], a["OS-EXT-IPS:type"]) for a in shown] == [
        (fixed, "fixed"), (fip["floating_ip_address"], "floating")]
    view = ServerInstanceSource(runtime).lookup(server["id"])
    assert view is not None
    assert (view.local_ipv4, view.public_ipv4, view.mac_address) == (
        fixed, fip["floating_ip_address"], port["mac_address"])
    data = json.loads(json.dumps(network_data_json(view, Defaults())))
    assert data["links"] == [{"id": "tap" + port["id"][:11], "vif_id": port["id"],
                              "type": "bridge", "mtu": 1450,
                              "ethernet_mac_address": port["mac_address"]}]
    assert data["networks"] == [{
        "id": "network0", "type": "ipv4", "link": "tap" + port["id"][:11],
        "ip_address": fixed, "netmask": "255.255.255.0", "network_id": net["id"],
        "routes": [{"network": "0.0.0.0", "netmask": "0.0.0.0", "gateway": "10.105.0.1"},
                   {"network": "169.254.169.254", "netmask": "255.255.255.255",
                    "gateway": "10.105.0.2"},
                   {"network": "10.200.0.0", "netmask": "255.255.0.0",
                    "gateway": "10.105.0.9"}],
        "services": [{"type": "dns", "address": "9.9.9.9"}]}]
    assert data["services"] == [{"type": "dns", "address": "9.9.9.9"}]
    delete_server(api, admin_headers, compute, server["id"])
    assert admin.get("floatingips", fip["id"])["port_id"] is None
    admin.call("DELETE", f"floatingips/{fip['id']}", expect=204)
    admin.call("PUT", f"routers/{router['id']}/remove_router_interface",
               {"subnet_id": net["subnet"]["id"]}, expect=200)
    admin.call("DELETE", f"routers/{router['id']}", expect=204)
    admin.call("DELETE", f"networks/{net['id']}", expect=204)


def test_an_api_process_shows_real_addresses_once_a_host_bound_the_ports() -> None:
    """`kumo api` builds no namespace: whether a guest is on real networks is its ports'
    binding (an agent on user networking never binds them)."""
    api_process = cast(Runtime, SimpleNamespace(services={}))
    nic = nics.Nic(port_id="p1", network_id="n1", network_name="netx", mac="fa:16:3e:00:00:01",
                   mtu=1450)
    assert nics.user_mode(api_process, [nic])
    assert nics.user_mode(api_process, [])
    assert not nics.user_mode(api_process, [replace(nic, host_id="host2")])
