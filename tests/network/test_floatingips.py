"""Floating IPs over the API: allocation, the association rules, one per fixed IP."""

from __future__ import annotations

from typing import Any

from tests.network.conftest import Neutron
from tests.network.test_routers import public_id


def test_allocate_and_delete(admin: Neutron, make_neutron: Any) -> None:
    alice = make_neutron("p-alice", "alice")
    public = public_id(alice)
    fip = alice.post("floatingips", floating_network_id=public, description="web")
    assert fip["floating_ip_address"] == "172.24.4.2"
    assert (fip["status"], fip["port_id"], fip["router_id"]) == ("DOWN", None, None)
    assert alice.list("floatingips", "floating_ip_address=172.24.4.2")[0]["id"] == fip["id"]
    chosen = alice.error("POST", "floatingips", {"floatingip": {
        "floating_network_id": public, "floating_ip_address": "172.24.4.77"}}, 403)
    assert chosen["type"] == "PolicyNotAuthorized"
    by_admin = admin.post("floatingips", floating_network_id=public,
                          floating_ip_address="172.24.4.77")
    assert by_admin["floating_ip_address"] == "172.24.4.77"
    taken = admin.error("POST", "floatingips", {"floatingip": {
        "floating_network_id": public, "floating_ip_address": "172.24.4.77"}}, 409)
    assert taken["type"] == "IpAddressInUse"
    private = alice.post("networks", name="internal")
    not_external = alice.error("POST", "floatingips", {"floatingip": {
        "floating_network_id": private["id"]}}, 400)
    assert not_external["message"] == (f"Bad floatingip request: Network {private['id']} is "
                                       "not a valid external network.")
    bob = make_neutron("p-bob", "bob")
    assert bob.error("GET", f"floatingips/{fip['id']}", None, 404)["type"] == \
        "FloatingIPNotFound"
    for who, made in ((alice, fip), (admin, by_admin)):
        who.call("DELETE", f"floatingips/{made['id']}", expect=204)
    assert admin.list("ports", "device_owner=network:floatingip") == []
    alice.call("DELETE", f"networks/{private['id']}", expect=204)


def test_association_rules(admin: Neutron, make_neutron: Any) -> None:
    alice = make_neutron("p-alice", "alice")
    public = public_id(alice)
    net = alice.network("a", "10.85.0.0/24")
    port = alice.post("ports", network_id=net["id"])
    fixed = port["fixed_ips"][0]["ip_address"]
    fip = alice.post("floatingips", floating_network_id=public)
    unreachable = alice.error("PUT", f"floatingips/{fip['id']}",
                              {"floatingip": {"port_id": port["id"]}}, 404)
    assert unreachable == {"type": "ExternalGatewayForFloatingIPNotFound", "detail": "",
                           "message": (
        f"External network {public} is not reachable from subnet {net['subnet']['id']}.  "
        f"Therefore, cannot associate Port {port['id']} with a Floating IP.")}
    router = alice.post("routers", name="r")
    alice.call("PUT", f"routers/{router['id']}/add_router_interface",
               {"subnet_id": net["subnet"]["id"]}, expect=200)
    # An interface is not enough: the router needs its gateway on that external network.
    alice.error("PUT", f"floatingips/{fip['id']}", {"floatingip": {"port_id": port["id"]}}, 404)
    alice.put("routers", router["id"], external_gateway_info={"network_id": public})
    bound = alice.put("floatingips", fip["id"], port_id=port["id"])
    assert (bound["fixed_ip_address"], bound["router_id"], bound["status"]) == (
        fixed, router["id"], "ACTIVE")
    assert bound["port_details"]["mac_address"] == port["mac_address"]
    second = alice.post("floatingips", floating_network_id=public)
    twice = alice.error("PUT", f"floatingips/{second['id']}",
                        {"floatingip": {"port_id": port["id"]}}, 409)
    assert twice["type"] == "FloatingIPPortAlreadyAssociated"
    wrong_ip = alice.error("PUT", f"floatingips/{second['id']}", {"floatingip": {
        "port_id": port["id"], "fixed_ip_address": "10.85.0.200"}}, 400)
    assert "does not have fixed ip 10.85.0.200" in wrong_ip["message"]
    for blocked in (("PUT", f"routers/{router['id']}/remove_router_interface",
                     {"subnet_id": net["subnet"]["id"]}, "RouterInterfaceInUseByFloatingIP"),
                    ("PUT", f"routers/{router['id']}", {"router": {"external_gateway_info": {}}},
                     "RouterExternalGatewayInUseByFloatingIp")):
        assert alice.error(*blocked[:3], 409)["type"] == blocked[3]
    bob = make_neutron("p-bob", "bob")
    foreign = bob.post("floatingips", floating_network_id=public)
    assert bob.error("PUT", f"floatingips/{foreign['id']}",
                     {"floatingip": {"port_id": port["id"]}}, 404)["type"] == "PortNotFound"
    bob.call("DELETE", f"floatingips/{foreign['id']}", expect=204)
    # Unset, then set again; deleting the port disassociates.
    assert alice.put("floatingips", fip["id"], port_id=None)["status"] == "DOWN"
    alice.put("floatingips", fip["id"], port_id=port["id"])
    alice.call("DELETE", f"ports/{port['id']}", expect=204)
    after = alice.get("floatingips", fip["id"])
    assert (after["port_id"], after["fixed_ip_address"], after["router_id"]) == (None,) * 3
    for made in (fip, second):
        alice.call("DELETE", f"floatingips/{made['id']}", expect=204)
    alice.call("PUT", f"routers/{router['id']}/remove_router_interface",
               {"subnet_id": net["subnet"]["id"]}, expect=200)
    alice.call("DELETE", f"routers/{router['id']}", expect=204)
    alice.call("DELETE", f"networks/{net['id']}", expect=204)
