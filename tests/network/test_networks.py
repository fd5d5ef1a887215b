"""Networks over the API: defaults, MTU, admin-only attributes, sharing, deletion rules."""

from __future__ import annotations

from typing import Any

from tests.network.conftest import N, Neutron


def test_external_network_made_at_start(admin: Neutron) -> None:
    [public] = admin.list("networks", "router:external=true")
    assert (public["name"], public["shared"], public["is_default"]) == ("public", False, True)
    [subnet] = admin.list("subnets", f"network_id={public['id']}")
    assert subnet["cidr"] == "172.24.4.0/24" and subnet["gateway_ip"] == "172.24.4.1"
    assert subnet["allocation_pools"] == [{"start": "172.24.4.2", "end": "172.24.4.254"}]
    assert subnet["enable_dhcp"] is False and subnet["router:external"] is True


def test_create_show_set_delete(admin: Neutron) -> None:
    net = admin.post("networks", name="n1", description="first")
    assert (net["mtu"], net["status"], net["admin_state_up"]) == (1450, "ACTIVE", True)
    assert net["router:external"] is False and net["shared"] is False
    assert net["availability_zones"] == ["nova"] and net["provider:network_type"] == "vxlan"
    other = admin.post("networks", name="n2")
    assert {net["provider:segmentation_id"], other["provider:segmentation_id"]} >= {2, 3}
    assert net["provider:segmentation_id"] != other["provider:segmentation_id"]
    changed = admin.put("networks", net["id"], name="renamed", mtu=1400,
                        port_security_enabled=False)
    assert (changed["name"], changed["mtu"], changed["port_security_enabled"]) == (
        "renamed", 1400, False)
    assert changed["revision_number"] == 2
    assert [n["name"] for n in admin.list("networks", "name=renamed")] == ["renamed"]
    assert admin.list("networks", "name=renamed&fields=id&fields=mtu") == [
        {"id": net["id"], "mtu": 1400}]
    assert admin.get("networks", net["id"])["description"] == "first"
    for made in (net, other):
        admin.call("DELETE", f"networks/{made['id']}", expect=204)
    error = admin.error("GET", f"networks/{net['id']}", None, 404)
    assert error["type"] == "NetworkNotFound"


def test_mtu_bounds_and_bad_input(admin: Neutron) -> None:
    too_big = admin.error("POST", "networks", {"network": {"name": "x", "mtu": 1500}}, 400)
    assert too_big["message"] == ("Invalid input for operation: Requested MTU is too big, "
                                  "maximum is 1450.")
    assert admin.error("POST", "networks", {"network": {"mtu": 67}}, 400)["type"] == \
        "InvalidInput"
    assert admin.post("networks", name="small", mtu=68)["mtu"] == 68
    unknown = admin.error("POST", "networks", {"network": {"name": "x", "colour": "red"}}, 400)
    assert "Unrecognized attribute(s) 'colour'" in unknown["message"]
    vlan = admin.error("POST", "networks", {"network": {"provider:network_type": "vlan"}}, 400)
    assert "VXLAN" in vlan["message"]
    assert admin.error("POST", "networks", {"network": {"admin_state_up": "maybe"}},
                       400)["type"] == "InvalidInput"
    assert admin.call("GET", "networks").status_code == 200
    assert admin.api.get(f"{N}/networks").status_code == 401


def test_admin_only_attributes(admin: Neutron, make_neutron: Any) -> None:
    alice = make_neutron("p-alice", "alice")
    for attribute in ("shared", "router:external", "is_default"):
        error = alice.error("POST", "networks", {"network": {attribute: True}}, 403)
        assert error == {"type": "PolicyNotAuthorized", "detail": "",
                         "message": f"(rule:create_network:{attribute}) is disallowed by policy"}
    net = alice.post("networks", name="mine")
    assert "provider:segmentation_id" not in net
    assert alice.error("PUT", f"networks/{net['id']}", {"network": {"shared": True}},
                       403)["type"] == "PolicyNotAuthorized"
    default = admin.error("POST", "networks", {"network": {"is_default": True}}, 400)
    assert "external" in default["message"]
    second = admin.error("POST", "networks",
                         {"network": {"router:external": True, "is_default": True}}, 409)
    assert second["type"] == "DefaultExternalNetworkExists"


def test_visibility_and_sharing(admin: Neutron, make_neutron: Any) -> None:
    alice = make_neutron("p-alice", "alice")
    bob = make_neutron("p-bob", "bob")
    private = alice.network("private-a", "10.20.0.0/24")
    assert bob.error("GET", f"networks/{private['id']}", None, 404)["type"] == "NetworkNotFound"
    assert bob.error("GET", f"subnets/{private['subnet']['id']}", None, 404)["type"] == \
        "SubnetNotFound"
    assert private["id"] not in {n["id"] for n in bob.list("networks")}
    port = bob.error("POST", "ports", {"port": {"network_id": private["id"]}}, 404)
    assert port["type"] == "NetworkNotFound"
    # Another project cannot change or delete it either (and is not told it exists).
    assert bob.error("DELETE", f"networks/{private['id']}", None, 404)["type"] == \
        "NetworkNotFound"
    shared = admin.network("shared-net", "10.21.0.0/24", shared=True)
    names = {n["name"] for n in bob.list("networks")}
    assert {"shared-net", "public"} <= names and "private-a" not in names
    assert bob.get("subnets", shared["subnet"]["id"])["cidr"] == "10.21.0.0/24"
    used = bob.post("ports", network_id=shared["id"])
    assert used["fixed_ips"][0]["subnet_id"] == shared["subnet"]["id"]
    assert bob.error("PUT", f"networks/{shared['id']}", {"network": {"name": "x"}},
                     403)["type"] == "PolicyNotAuthorized"
    unshare = admin.error("PUT", f"networks/{shared['id']}", {"network": {"shared": False}}, 409)
    assert unshare["type"] == "InvalidSharedSetting"
    # Ports on the external network are for routers and floating IPs, not projects.
    public = bob.list("networks", "router:external=true")[0]
    assert bob.error("POST", "ports", {"port": {"network_id": public["id"]}},
                     403)["type"] == "PolicyNotAuthorized"
    bob.call("DELETE", f"ports/{used['id']}", expect=204)
    admin.call("DELETE", f"networks/{shared['id']}", expect=204)
    alice.call("DELETE", f"networks/{private['id']}", expect=204)


def test_delete_refused_while_ports_remain(admin: Neutron) -> None:
    net = admin.network("busy", "10.22.0.0/24")
    [dhcp] = admin.list("ports", f"network_id={net['id']}")
    assert dhcp["device_owner"] == "network:dhcp"
    port = admin.post("ports", network_id=net["id"], name="p")
    error = admin.error("DELETE", f"networks/{net['id']}", None, 409)
    assert error["type"] == "NetworkInUse"
    assert error["message"] == (
        f"Unable to complete operation on network {net['id']}. There are one or more ports "
        f"still in use on the network, id for these ports is: {port['id']}.")
    admin.call("DELETE", f"ports/{port['id']}", expect=204)
    admin.call("DELETE", f"networks/{net['id']}", expect=204)  # DHCP port and subnet go too
    assert admin.list("ports", f"network_id={net['id']}") == []
    assert admin.list("subnets", f"network_id={net['id']}") == []


def test_discovery_and_extensions(admin: Neutron) -> None:
    versions = admin.api.get("/network/").json()["versions"]
    assert versions[0]["id"] == "v2.0"
    aliases = {e["alias"] for e in admin.call("GET", "extensions").json()["extensions"]}
    assert {"router", "external-net", "security-group", "port-security", "net-mtu",
            "auto-allocated-topology", "extraroute", "binding"} <= aliases
    assert admin.call("GET", "extensions/router", expect=200).json()["extension"][
        "alias"] == "router"
    admin.call("GET", "extensions/external-gateway-multihoming", expect=404)
