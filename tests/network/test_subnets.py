"""Subnets over the API: gateway and pools, overlap refusal (cloud-wide and host routes),
IPv4 only, DHCP port, in-use deletes."""

from __future__ import annotations

from typing import Any

from tests.network.conftest import Neutron


def subnet_body(network_id: str, cidr: str, **extra: Any) -> dict[str, Any]:
    return {"subnet": {"network_id": network_id, "cidr": cidr, "ip_version": 4, **extra}}


def test_defaults_gateway_pools_and_options(admin: Neutron) -> None:
    net = admin.post("networks", name="n")
    plain = admin.post("subnets", network_id=net["id"], cidr="10.30.0.0/24", ip_version=4)
    assert plain["gateway_ip"] == "10.30.0.1" and plain["enable_dhcp"] is True
    assert plain["allocation_pools"] == [{"start": "10.30.0.2", "end": "10.30.0.254"}]
    no_gw = admin.post("subnets", network_id=net["id"], cidr="10.30.1.0/24", gateway_ip=None,
                       dns_nameservers=["9.9.9.9"], enable_dhcp=False,
                       host_routes=[{"destination": "10.99.0.0/16", "nexthop": "10.30.1.9"}])
    assert no_gw["gateway_ip"] is None
    assert no_gw["allocation_pools"] == [{"start": "10.30.1.1", "end": "10.30.1.254"}]
    assert no_gw["dns_nameservers"] == ["9.9.9.9"] and no_gw["host_routes"][0]["nexthop"] == \
        "10.30.1.9"
    mid = admin.post("subnets", network_id=net["id"], cidr="10.30.2.0/24",
                     gateway_ip="10.30.2.100",
                     allocation_pools=[{"start": "10.30.2.10", "end": "10.30.2.20"}])
    assert mid["allocation_pools"] == [{"start": "10.30.2.10", "end": "10.30.2.20"}]
    changed = admin.put("subnets", mid["id"], name="renamed", dns_nameservers=["1.1.1.1"],
                        gateway_ip="10.30.2.1")
    assert (changed["name"], changed["gateway_ip"]) == ("renamed", "10.30.2.1")
    assert admin.error("PUT", f"subnets/{mid['id']}", {"subnet": {"cidr": "10.31.0.0/24"}},
                       400)["message"] == "Cannot update read-only attribute cidr"
    assert [s["name"] for s in admin.list("subnets", f"network_id={net['id']}&cidr=10.30.2.0/24")
            ] == ["renamed"]
    admin.call("DELETE", f"networks/{net['id']}", expect=204)


def test_bad_pools_gateways_and_cidrs(admin: Neutron) -> None:
    net = admin.post("networks", name="n")
    nid = net["id"]

    def refused(status: int, cidr: str = "10.40.0.0/24", **extra: Any) -> dict[str, Any]:
        return admin.error("POST", "subnets", subnet_body(nid, cidr, **extra), status)

    assert refused(400, allocation_pools=[{"start": "10.40.0.200", "end": "10.40.1.5"}])[
        "type"] == "OutOfBoundsAllocationPool"
    assert refused(409, allocation_pools=[{"start": "10.40.0.2", "end": "10.40.0.50"},
                                          {"start": "10.40.0.40", "end": "10.40.0.60"}])[
        "type"] == "OverlappingAllocationPools"
    assert refused(409, allocation_pools=[{"start": "10.40.0.1", "end": "10.40.0.50"}])[
        "type"] == "GatewayConflictWithAllocationPools"
    assert refused(400, allocation_pools=[{"start": "10.40.0.9", "end": "10.40.0.3"}])[
        "type"] == "InvalidAllocationPool"
    assert refused(400, gateway_ip="10.41.0.1")["type"] == "InvalidInput"
    assert refused(400, gateway_ip="10.40.0.255")["message"] == \
        "Invalid input for operation: Gateway is not valid on subnet."
    assert "isn't a recognized IP subnet cidr, '10.40.0.0/24' is recommended" in refused(
        400, cidr="10.40.0.7/24")["message"]
    assert "not a valid IP subnet" in refused(400, cidr="banana")["message"]
    assert "incompatible with DHCP" in refused(400, cidr="10.40.0.0/31")["message"]
    assert "link-local" in refused(400, cidr="169.254.10.0/24")["message"]
    assert "loopback" in refused(400, cidr="127.1.0.0/24")["message"]
    assert refused(400, dns_nameservers=["1.1.1.1", "1.1.1.1"])["message"].endswith(
        "Duplicate nameserver '1.1.1.1'.")
    assert refused(400, dns_nameservers=[f"1.1.1.{i}" for i in range(6)])["type"] == \
        "DNSNameServersExhausted"
    ipv6 = admin.error("POST", "subnets", {"subnet": {"network_id": nid, "cidr": "fd00::/64",
                                                      "ip_version": 6}}, 400)
    assert "IPv4 only" in ipv6["message"]
    assert "IPv4 only" in refused(400, cidr="fd00:1::/64")["message"]
    missing = admin.error("POST", "subnets", {"subnet": {"network_id": nid}}, 400)
    assert "cidr must be specified" in missing["message"]
    admin.call("DELETE", f"networks/{nid}", expect=204)


def test_no_overlap_anywhere_in_the_cloud(admin: Neutron, make_neutron: Any) -> None:
    alice = make_neutron("p-alice", "alice")
    mine = alice.network("a", "10.50.0.0/16")
    other = admin.post("networks", name="b")
    error = admin.error("POST", "subnets", subnet_body(other["id"], "10.50.3.0/24"), 400)
    assert error == {"type": "InvalidInput", "detail": "", "message": (
        f"Invalid input for operation: Requested subnet with cidr: 10.50.3.0/24 for network: "
        f"{other['id']} overlaps with another subnet.")}
    assert admin.error("POST", "subnets", subnet_body(other["id"], "10.0.0.0/8"),
                       400)["type"] == "InvalidInput"
    assert admin.error("POST", "subnets", subnet_body(other["id"], "172.24.4.128/25"),
                       400)["type"] == "InvalidInput"  # the external subnet counts too
    assert admin.post("subnets", network_id=other["id"], cidr="10.51.0.0/24")["cidr"] == \
        "10.51.0.0/24"
    for net, who in ((mine, alice), (other, admin)):
        who.call("DELETE", f"networks/{net['id']}", expect=204)


def test_host_routes_refused_with_the_reason(admin: Neutron) -> None:
    net = admin.post("networks", name="n")
    error = admin.error("POST", "subnets", subnet_body(net["id"], "192.168.77.128/25"), 400)
    assert "overlaps with this host's route 192.168.77.0/24 dev eth0" in error["message"]
    assert "choose another CIDR" in error["message"]
    # The default route is not a conflict.
    assert admin.post("subnets", network_id=net["id"], cidr="192.168.78.0/24")["cidr"] == \
        "192.168.78.0/24"
    admin.call("DELETE", f"networks/{net['id']}", expect=204)


def test_dhcp_port_follows_dhcp_subnets(admin: Neutron) -> None:
    net = admin.network("d", "10.60.0.0/24")
    [dhcp] = admin.list("ports", f"network_id={net['id']}&device_owner=network:dhcp")
    assert dhcp["fixed_ips"] == [{"subnet_id": net["subnet"]["id"], "ip_address": "10.60.0.2"}]
    assert dhcp["mac_address"].startswith("fa:16:3e:") and dhcp["status"] == "ACTIVE"
    second = admin.post("subnets", network_id=net["id"], cidr="10.60.1.0/24")
    [dhcp] = admin.list("ports", f"network_id={net['id']}&device_owner=network:dhcp")
    assert [ip["ip_address"] for ip in dhcp["fixed_ips"]] == ["10.60.0.2", "10.60.1.2"]
    admin.put("subnets", second["id"], enable_dhcp=False)
    [dhcp] = admin.list("ports", f"network_id={net['id']}&device_owner=network:dhcp")
    assert [ip["ip_address"] for ip in dhcp["fixed_ips"]] == ["10.60.0.2"]
    refused = admin.error("DELETE", f"ports/{dhcp['id']}", None, 409)
    assert refused["type"] == "ServicePortInUse" and "--no-dhcp" in refused["message"]
    admin.put("subnets", net["subnet"]["id"], enable_dhcp=False)
    assert admin.list("ports", f"network_id={net['id']}") == []
    admin.call("DELETE", f"networks/{net['id']}", expect=204)


def test_delete_in_use(admin: Neutron) -> None:
    net = admin.network("u", "10.61.0.0/24")
    port = admin.post("ports", network_id=net["id"])
    error = admin.error("DELETE", f"subnets/{net['subnet']['id']}", None, 409)
    assert error["type"] == "SubnetInUse"
    assert error["message"] == (f"Unable to complete operation on subnet {net['subnet']['id']}: "
                                "One or more ports have an IP allocation from this subnet.")
    admin.call("DELETE", f"ports/{port['id']}", expect=204)
    admin.call("DELETE", f"subnets/{net['subnet']['id']}", expect=204)  # the DHCP port goes
    assert admin.list("ports", f"network_id={net['id']}") == []
    admin.call("DELETE", f"networks/{net['id']}", expect=204)
