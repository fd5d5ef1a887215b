"""Routers over the API: gateway and SNAT policy, interfaces, routes, in-use deletes."""

from __future__ import annotations

from typing import Any

from tests.network.conftest import Neutron


def public_id(neutron: Neutron) -> str:
    return str(neutron.list("networks", "router:external=true")[0]["id"])


def test_gateway_and_snat(admin: Neutron, make_neutron: Any) -> None:
    alice = make_neutron("p-alice", "alice")
    public = public_id(alice)
    router = alice.post("routers", name="r", external_gateway_info={"network_id": public})
    info = router["external_gateway_info"]
    assert info["network_id"] == public and info["enable_snat"] is False  # kumo's default
    [gateway] = info["external_fixed_ips"]
    assert gateway["ip_address"] == "172.24.4.2"
    [port] = admin.list("ports", f"device_id={router['id']}")
    assert (port["device_owner"], port["project_id"]) == ("network:router_gateway", "")
    snat = alice.error("PUT", f"routers/{router['id']}", {"router": {"external_gateway_info": {
        "network_id": public, "enable_snat": True}}}, 403)
    assert snat["message"] == ("(rule:update_router:external_gateway_info:enable_snat) is "
                               "disallowed by policy")
    by_admin = admin.put("routers", router["id"], external_gateway_info={
        "network_id": public, "enable_snat": True})
    assert by_admin["external_gateway_info"]["enable_snat"] is True
    internal = alice.post("networks", name="not-external")
    wrong = alice.error("PUT", f"routers/{router['id']}", {"router": {"external_gateway_info": {
        "network_id": internal["id"]}}}, 400)
    assert wrong["message"] == f"Bad router request: Network {internal['id']} is not an " \
                               "external network."
    cleared = alice.put("routers", router["id"], external_gateway_info={})
    assert cleared["external_gateway_info"] is None
    assert admin.list("ports", f"device_id={router['id']}") == []
    alice.call("DELETE", f"routers/{router['id']}", expect=204)
    alice.call("DELETE", f"networks/{internal['id']}", expect=204)


def test_interfaces(admin: Neutron, make_neutron: Any) -> None:
    alice = make_neutron("p-alice", "alice")
    net = alice.network("a", "10.80.0.0/24")
    sid = net["subnet"]["id"]
    r1 = alice.post("routers", name="r1")
    r2 = alice.post("routers", name="r2")
    added = alice.call("PUT", f"routers/{r1['id']}/add_router_interface", {"subnet_id": sid},
                       expect=200).json()
    assert added["subnet_id"] == sid and added["network_id"] == net["id"]
    port = alice.get("ports", added["port_id"])
    assert port["fixed_ips"] == [{"subnet_id": sid, "ip_address": "10.80.0.1"}]
    assert (port["device_owner"], port["device_id"]) == ("network:router_interface", r1["id"])
    again = alice.error("PUT", f"routers/{r1['id']}/add_router_interface", {"subnet_id": sid},
                        400)
    assert again["message"] == f"Bad router request: Router already has a port on subnet {sid}."
    gateway_taken = alice.error("PUT", f"routers/{r2['id']}/add_router_interface",
                                {"subnet_id": sid}, 409)
    assert gateway_taken["type"] == "IpAddressInUse"
    spare = alice.post("ports", network_id=net["id"])
    by_port = alice.call("PUT", f"routers/{r2['id']}/add_router_interface",
                         {"port_id": spare["id"]}, expect=200).json()
    assert by_port["port_id"] == spare["id"]
    assert alice.get("ports", spare["id"])["security_groups"] == []
    assert alice.error("DELETE", f"ports/{spare['id']}", None, 409)["type"] == "L3PortInUse"
    busy = alice.error("DELETE", f"routers/{r1['id']}", None, 409)
    assert busy == {"type": "RouterInUse", "detail": "",
                    "message": f"Router {r1['id']} still has ports"}
    assert alice.error("DELETE", f"networks/{net['id']}", None, 409)["type"] == "NetworkInUse"
    missing = alice.error("PUT", f"routers/{r1['id']}/remove_router_interface",
                          {"subnet_id": "0" * 8}, 404)
    assert missing["type"] == "RouterInterfaceNotFoundForSubnet"
    for router, body in ((r1, {"subnet_id": sid}), (r2, {"port_id": spare["id"]})):
        alice.call("PUT", f"routers/{router['id']}/remove_router_interface", body, expect=200)
        alice.call("DELETE", f"routers/{router['id']}", expect=204)
    assert alice.list("ports", f"network_id={net['id']}&device_owner=network:router_interface"
                      ) == []
    alice.call("DELETE", f"networks/{net['id']}", expect=204)
    # Another project's subnet is not the router's to attach.
    bob = make_neutron("p-bob", "bob")
    theirs = bob.network("b", "10.81.0.0/24")
    r3 = alice.post("routers", name="r3")
    assert alice.error("PUT", f"routers/{r3['id']}/add_router_interface",
                       {"subnet_id": theirs["subnet"]["id"]}, 404)["type"] == "SubnetNotFound"
    alice.call("DELETE", f"routers/{r3['id']}", expect=204)
    bob.call("DELETE", f"networks/{theirs['id']}", expect=204)


def test_routes(admin: Neutron) -> None:
    net = admin.network("rt", "10.82.0.0/24")
    router = admin.post("routers", name="r")
    admin.call("PUT", f"routers/{router['id']}/add_router_interface",
               {"subnet_id": net["subnet"]["id"]}, expect=200)
    routes = [{"destination": "10.90.0.0/16", "nexthop": "10.82.0.7"}]
    assert admin.put("routers", router["id"], routes=routes)["routes"] == routes
    off_link = admin.error("PUT", f"routers/{router['id']}", {"router": {"routes": [
        {"destination": "10.91.0.0/16", "nexthop": "10.99.0.1"}]}}, 400)
    assert off_link["type"] == "InvalidRoutes" and "not connected" in off_link["message"]
    needed = admin.error("PUT", f"routers/{router['id']}/remove_router_interface",
                         {"subnet_id": net["subnet"]["id"]}, 409)
    assert needed["type"] == "RouterInterfaceInUseByRoute"
    admin.put("routers", router["id"], routes=[])
    admin.call("PUT", f"routers/{router['id']}/remove_router_interface",
               {"subnet_id": net["subnet"]["id"]}, expect=200)
    admin.call("DELETE", f"routers/{router['id']}", expect=204)
    admin.call("DELETE", f"networks/{net['id']}", expect=204)
