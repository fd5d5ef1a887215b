"""Network fixtures: the compute service over fakes (shared with tests/compute), a known
host routing table, and small helpers for Neutron calls over the TestClient."""

from __future__ import annotations

import ipaddress
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.testclient import TestClient

from kumo.network import hostroutes
from kumo.network.agent import network_of
from kumo.network.topology import Topology
from kumo.runtime import Runtime
from tests.compute.conftest import compute, hypervisor, images

__all__ = ["compute", "hypervisor", "images"]

N = "/network/v2.0"
# The routes of the host every API test sees: a LAN on eth0 (the default route is not
# listed, as `uplink.host_routes` leaves it out) and kumo's uplink to its external subnet.
HOST_ROUTES = [(ipaddress.ip_network("192.168.77.0/24"), "eth0"),
               (ipaddress.ip_network("172.24.4.0/24"), "kumo-12345678")]


@pytest.fixture(autouse=True)
def host_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The API's checks see the same host in every test, whatever this machine's routes
    (the driver's own checks, `uplink.host_routes`, still see the real ones)."""
    monkeypatch.setattr(hostroutes, "host_routes", lambda: list(HOST_ROUTES))


def singular_of(collection: str) -> str:
    """`security-groups` -> `security_group`: the key of one item in a body."""
    return collection.replace("-", "_")[:-1]


class Neutron:
    """Neutron calls as one caller: `net.post("networks", name="n1")` -> the new network."""

    def __init__(self, api: TestClient, headers: dict[str, str]) -> None:
        self.api, self.headers = api, headers

    def call(self, method: str, path: str, body: Any = None, expect: int | None = None) -> Any:
        response = self.api.request(method, f"{N}/{path}", json=body, headers=self.headers)
        if expect is not None:
            assert response.status_code == expect, response.text
        return response

    def post(self, collection: str, **spec: Any) -> dict[str, Any]:
        singular = singular_of(collection)
        response = self.call("POST", collection, {singular: spec}, expect=201)
        return dict(response.json()[singular])

    def put(self, collection: str, item_id: str, **spec: Any) -> dict[str, Any]:
        singular = singular_of(collection)
        response = self.call("PUT", f"{collection}/{item_id}", {singular: spec}, expect=200)
        return dict(response.json()[singular])

    def get(self, collection: str, item_id: str) -> dict[str, Any]:
        response = self.call("GET", f"{collection}/{item_id}", expect=200)
        return dict(response.json()[singular_of(collection)])

    def list(self, collection: str, query: str = "") -> list[dict[str, Any]]:
        response = self.call("GET", f"{collection}?{query}", expect=200)
        return list(response.json()[collection.replace("-", "_")])

    def error(self, method: str, path: str, body: Any, status: int) -> dict[str, Any]:
        """The NeutronError of a call that must fail with `status`."""
        response = self.call(method, path, body, expect=status)
        error = response.json()["NeutronError"]
        assert set(error) == {"type", "message", "detail"}
        return dict(error)

    def network(self, name: str, cidr: str | None = None, **spec: Any) -> dict[str, Any]:
        """A network (and, with `cidr`, its subnet `<name>-subnet`)."""
        network = self.post("networks", name=name, **spec)
        if cidr:
            network["subnet"] = self.post("subnets", network_id=network["id"], cidr=cidr,
                                          ip_version=4, name=f"{name}-subnet")
        return network


@pytest.fixture
def admin(api: TestClient, admin_headers: dict[str, str]) -> Neutron:
    return Neutron(api, admin_headers)


@pytest.fixture
def make_neutron(api: TestClient, make_project_user: Any) -> Any:
    def make(project: str, user: str, roles: tuple[str, ...] = ("member",)) -> Neutron:
        return Neutron(api, make_project_user(project, user, roles))

    return make


class RecordingDriver:
    """A network driver that builds nothing and keeps each topology it was asked to apply.

    It has a namespace, as the bridge driver: compute hands QEMU tap NICs and shows the
    ports' real addresses.
    """

    name = "bridge"

    def __init__(self) -> None:
        self.applied: list[Topology] = []
        self.ns = SimpleNamespace(name="kumo-test")

    def setup(self) -> None:
        pass

    def apply(self, topology: Topology) -> None:
        self.applied.append(topology)

    def teardown(self) -> None:
        pass


@pytest.fixture
def bridge(runtime: Runtime) -> RecordingDriver:
    """Pretend the bridge driver runs: real addresses in `addresses` and metadata."""
    driver = RecordingDriver()
    network_of(runtime).driver = driver
    return driver
