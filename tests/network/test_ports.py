"""Ports over the API: fixed IPs, full subnets, MACs, security groups, port security,
filters, and who may do what."""

from __future__ import annotations

from typing import Any

from tests.network.conftest import Neutron


def port_body(network_id: str, **extra: Any) -> dict[str, Any]:
    return {"port": {"network_id": network_id, **extra}}


def test_fixed_ips_and_full_subnet(admin: Neutron) -> None:
    net = admin.network("p", "10.70.0.0/29")  # .1 gateway, .2 DHCP, .3-.6 free
    sid = net["subnet"]["id"]
    chosen = admin.post("ports", network_id=net["id"],
                        fixed_ips=[{"subnet_id": sid, "ip_address": "10.70.0.5"}])
    assert chosen["fixed_ips"] == [{"subnet_id": sid, "ip_address": "10.70.0.5"}]
    by_ip = admin.post("ports", network_id=net["id"], fixed_ips=[{"ip_address": "10.70.0.6"}])
    assert by_ip["fixed_ips"][0]["subnet_id"] == sid
    taken = admin.error("POST", "ports", port_body(
        net["id"], fixed_ips=[{"ip_address": "10.70.0.5"}]), 409)
    assert taken == {"type": "IpAddressInUse", "detail": "", "message": (
        f"Unable to complete operation for network {net['id']}. The IP address 10.70.0.5 is "
        "in use.")}
    lowest = [admin.post("ports", network_id=net["id"]) for _ in range(2)]
    assert [p["fixed_ips"][0]["ip_address"] for p in lowest] == ["10.70.0.3", "10.70.0.4"]
    full = admin.error("POST", "ports", port_body(net["id"]), 409)
    assert full == {"type": "IpAddressGenerationFailure", "detail": "",
                    "message": f"No more IP addresses available on network {net['id']}."}
    outside = admin.error("POST", "ports", port_body(
        net["id"], fixed_ips=[{"subnet_id": sid, "ip_address": "10.71.0.5"}]), 400)
    assert outside["type"] == "InvalidIpForSubnet"
    nowhere = admin.error("POST", "ports", port_body(
        net["id"], fixed_ips=[{"ip_address": "10.72.0.5"}]), 400)
    assert nowhere["type"] == "InvalidIpForNetwork"
    # Freed addresses come back; an update moves a port to another address.
    admin.call("DELETE", f"ports/{lowest[0]['id']}", expect=204)
    moved = admin.put("ports", chosen["id"], fixed_ips=[{"ip_address": "10.70.0.3"}])
    assert moved["fixed_ips"] == [{"subnet_id": sid, "ip_address": "10.70.0.3"}]
    assert admin.post("ports", network_id=net["id"])["fixed_ips"][0]["ip_address"] == \
        "10.70.0.5"
    for port in admin.list("ports", f"network_id={net['id']}&device_owner="):
        admin.call("DELETE", f"ports/{port['id']}", expect=204)
    admin.call("DELETE", f"networks/{net['id']}", expect=204)


def test_macs(admin: Neutron) -> None:
    net = admin.network("m", "10.71.0.0/24")
    macs = {admin.post("ports", network_id=net["id"])["mac_address"] for _ in range(5)}
    assert len(macs) == 5 and all(m.startswith("fa:16:3e:") for m in macs)
    given = admin.post("ports", network_id=net["id"], mac_address="FA:16:3E:00:00:01")
    assert given["mac_address"] == "fa:16:3e:00:00:01"
    dup = admin.error("POST", "ports", port_body(net["id"], mac_address="fa:16:3e:00:00:01"),
                      409)
    assert dup["type"] == "MacAddressInUse"
    assert admin.error("POST", "ports", port_body(net["id"], mac_address="01:00:5e:00:00:01"),
                       400)["type"] == "InvalidInput"  # multicast
    admin.put("ports", given["id"], **{"binding:host_id": "host-a"})
    bound = admin.error("PUT", f"ports/{given['id']}",
                        {"port": {"mac_address": "fa:16:3e:00:00:02"}}, 409)
    assert bound["type"] == "PortBound"
    for port in admin.list("ports", f"network_id={net['id']}&device_owner="):
        admin.call("DELETE", f"ports/{port['id']}", expect=204)
    admin.call("DELETE", f"networks/{net['id']}", expect=204)


def test_security_groups_and_port_security(admin: Neutron) -> None:
    net = admin.network("s", "10.72.0.0/24")
    [default] = admin.list("security-groups", "name=default")
    web = admin.post("security-groups", name="web")
    port = admin.post("ports", network_id=net["id"])
    assert port["security_groups"] == [default["id"]] and port["port_security_enabled"]
    changed = admin.put("ports", port["id"], security_groups=[web["id"]])
    assert changed["security_groups"] == [web["id"]]
    assert admin.list("ports", f"security_groups={web['id']}")[0]["id"] == port["id"]
    in_use = admin.error("DELETE", f"security-groups/{web['id']}", None, 409)
    assert in_use["type"] == "SecurityGroupInUse"
    disable = admin.error("PUT", f"ports/{port['id']}", {"port": {"port_security_enabled": False}},
                          409)
    assert disable["type"] == "PortSecurityPortHasSecurityGroup"
    open_port = admin.put("ports", port["id"], port_security_enabled=False, security_groups=[])
    assert (open_port["port_security_enabled"], open_port["security_groups"]) == (False, [])
    refused = admin.error("POST", "ports", port_body(
        net["id"], port_security_enabled=False, security_groups=[web["id"]]), 400)
    assert "Port security must be enabled" in refused["message"]
    bare = admin.post("ports", network_id=net["id"], port_security_enabled=False)
    assert bare["security_groups"] == []
    unknown = admin.error("POST", "ports", port_body(net["id"], security_groups=["nope"]), 404)
    assert unknown["type"] == "SecurityGroupNotFound"
    stateless = admin.post("security-groups", name="bare", stateful=False)
    mixed = admin.error("POST", "ports", port_body(
        net["id"], security_groups=[web["id"], stateless["id"]]), 409)
    assert mixed["type"] == "SecurityGroupConflict"
    assert "both stateful and stateless" in mixed["message"]
    for made in (port, bare):
        admin.call("DELETE", f"ports/{made['id']}", expect=204)
    for group in (web, stateless):
        admin.call("DELETE", f"security-groups/{group['id']}", expect=204)
    admin.call("DELETE", f"networks/{net['id']}", expect=204)


def test_filters_fields_and_paging(admin: Neutron) -> None:
    net = admin.network("f", "10.73.0.0/24")
    made = [admin.post("ports", network_id=net["id"], name=f"p{i}", device_id=f"dev-{i % 2}")
            for i in range(3)]
    assert {p["name"] for p in admin.list("ports", "device_id=dev-0")} == {"p0", "p2"}
    ip = made[1]["fixed_ips"][0]["ip_address"]
    assert [p["name"] for p in admin.list("ports", f"fixed_ips=ip_address={ip}")] == ["p1"]
    assert sorted(p["name"] for p in admin.list("ports", "fixed_ips=ip_address_substr=10.73.0.")
                  if p["name"]) == ["p0", "p1", "p2"]
    assert admin.list("ports", "name=p0&name=p1&fields=name&sort_key=name") == [
        {"name": "p0"}, {"name": "p1"}]
    assert admin.list("ports", "no_such_attribute=1") == []
    page = admin.call("GET", f"ports?network_id={net['id']}&device_owner=&limit=2",
                      expect=200).json()
    assert len(page["ports"]) == 2 and page["ports_links"][0]["rel"] == "next"
    rest = admin.list("ports", f"network_id={net['id']}&device_owner=&limit=2&"
                               f"marker={page['ports'][-1]['id']}")
    assert len(rest) == 1
    by_name = admin.list("ports", "device_owner=&sort_key=name&sort_dir=desc&fields=name")
    assert [p["name"] for p in by_name] == ["p2", "p1", "p0"]
    for port in made:
        admin.call("DELETE", f"ports/{port['id']}", expect=204)
    admin.call("DELETE", f"networks/{net['id']}", expect=204)


def test_policies_on_shared_networks(admin: Neutron, make_neutron: Any) -> None:
    shared = admin.network("sh", "10.74.0.0/24", shared=True)
    alice = make_neutron("p-alice", "alice")
    bob = make_neutron("p-bob", "bob")
    mine = alice.post("ports", network_id=shared["id"], name="a")
    assert "binding:host_id" not in mine
    for attribute, value in (("fixed_ips", [{"ip_address": "10.74.0.50"}]),
                             ("mac_address", "fa:16:3e:11:22:33"),
                             ("binding:host_id", "h"), ("device_owner", "network:dhcp")):
        error = alice.error("POST", "ports", port_body(shared["id"], **{attribute: value}), 403)
        assert error["type"] == "PolicyNotAuthorized", attribute
    assert bob.error("GET", f"ports/{mine['id']}", None, 404)["type"] == "PortNotFound"
    assert admin.get("ports", mine["id"])["project_id"] == mine["project_id"]
    alice.call("DELETE", f"ports/{mine['id']}", expect=204)
    admin.call("DELETE", f"networks/{shared['id']}", expect=204)
