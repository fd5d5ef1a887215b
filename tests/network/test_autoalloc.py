"""The default network on first use: server create without a network, and Neutron's
auto-allocated-topology API."""

from __future__ import annotations

from typing import Any

from starlette.testclient import TestClient

from kumo.compute.service import ComputeService
from kumo.db.engine import session_scope
from kumo.network import autoalloc
from kumo.runtime import Runtime
from tests.compute.conftest import IMAGE_ID
from tests.compute.test_routes import V, boot
from tests.network.conftest import Neutron
from tests.network.test_routers import public_id


def test_first_server_gets_the_default_network(
        api: TestClient, admin: Neutron, make_neutron: Any, make_project_user: Any,
        compute: ComputeService) -> None:
    alice_headers = make_project_user("p-alice", "alice")
    alice = Neutron(api, alice_headers)
    assert alice.list("networks", "router:external=false") == []
    first = boot(api, alice_headers, compute, name="a1")
    [net] = alice.list("networks", "router:external=false")
    [subnet] = alice.list("subnets", f"network_id={net['id']}")
    [router] = alice.list("routers")
    assert (net["name"], subnet["name"], router["name"]) == ("private", "private-subnet",
                                                            "router1")
    assert subnet["cidr"] == "10.0.0.0/24" and subnet["gateway_ip"] == "10.0.0.1"
    gateway = router["external_gateway_info"]
    assert gateway["network_id"] == public_id(alice) and gateway["enable_snat"] is False
    ports = alice.list("ports", f"network_id={net['id']}&fields=device_owner")
    assert sorted(p["device_owner"] for p in ports) == [
        "compute:nova", "network:dhcp", "network:router_interface"]
    # The same network for the project's next server (pre-2.37: no `networks` at all).
    second = api.post(f"{V}/servers", headers=alice_headers, json={"server": {
        "name": "a2", "imageRef": IMAGE_ID, "flavorRef": "1"}})
    assert second.status_code == 202, second.text
    compute.wait_idle()
    assert len(alice.list("networks", "router:external=false")) == 1
    topology = alice.call("GET", f"auto-allocated-topology/{net['project_id']}",
                          expect=200).json()["auto_allocated_topology"]
    assert topology["id"] == net["id"]
    # Another project gets its own, from the next piece of the pool.
    bob_headers = make_project_user("p-bob", "bob")
    bob = Neutron(api, bob_headers)
    made = bob.call("GET", "auto-allocated-topology/" + bob.list("security-groups")[0][
        "project_id"], expect=200).json()["auto_allocated_topology"]
    assert bob.list("subnets", f"network_id={made['id']}")[0]["cidr"] == "10.0.1.0/24"
    assert bob.error("GET", f"auto-allocated-topology/{net['project_id']}", None,
                     403)["type"] == "PolicyNotAuthorized"
    dry = bob.call("GET", f"auto-allocated-topology/{made['project_id']}?fields=dry-run",
                   expect=200).json()["auto_allocated_topology"]
    assert dry["id"] == "dry-run=pass"
    bob.call("DELETE", f"auto-allocated-topology/{made['project_id']}", expect=204)
    assert bob.list("networks", "router:external=false") == bob.list("routers") == []
    for server in (first["id"], second.json()["server"]["id"]):
        assert api.delete(f"{V}/servers/{server}", headers=alice_headers).status_code == 204
    compute.wait_idle()
    alice.call("DELETE", f"auto-allocated-topology/{net['project_id']}", expect=204)
    assert alice.list("ports", f"network_id={net['id']}") == []


def test_pool_skips_used_pieces_and_host_routes(runtime: Runtime, admin: Neutron) -> None:
    settings = runtime.settings.network
    settings.default_subnet_pool = "192.168.76.0/22"
    taken = admin.network("taken", "192.168.76.0/24")
    with session_scope(runtime.sessions) as session:
        # .76 is a subnet, .77 the host's LAN (tests' route table): .78 is next.
        assert str(autoalloc.free_cidr(session, settings)) == "192.168.78.0/24"
    settings.default_subnet_pool = "192.168.77.0/24"
    error = admin.error("GET", "auto-allocated-topology/" + taken["project_id"], None, 409)
    assert error["type"] == "AutoAllocationFailure" and "default_subnet_pool" in error["message"]
    admin.call("DELETE", f"networks/{taken['id']}", expect=204)
