"""Every route in kumo's route tables, fed malformed requests: never a 5xx.

The routes are read from the assembled Starlette app (every Mount, every Route,
every method), so a route added tomorrow is fuzzed tomorrow. Bodies are drawn by
hypothesis: deep nesting, lone surrogates, huge and negative numbers, wrong types
in otherwise valid bodies, unknown fields, huge strings, invalid UTF-8 and wrong
content types. Compute runs over the in-memory hypervisor: nothing boots.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Mount, Route
from starlette.testclient import TestClient

from kumo.compute.images import BootImage
from kumo.compute.service import ComputeService
from kumo.runtime import Runtime
from tests.compute.fakes import FakeHypervisor, FakeImages, FakeMetadata

BOOT_IMAGE = "11111111-2222-4333-8444-555555555555"
BODY_EXAMPLES = 20  # per route that takes a body: a few thousand requests in all
OTHER_EXAMPLES = 5
BODY_METHODS = ("POST", "PUT", "PATCH")


def route_table(app: Starlette) -> list[tuple[str, str]]:
    """(path template, method) of every route, mounts followed (HEAD is GET's twin)."""

    def walk(routes: list[BaseRoute], prefix: str) -> Iterator[tuple[str, str]]:
        for route in routes:
            if isinstance(route, Mount):
                inner = getattr(route.app, "routes", None) or route.routes
                yield from walk(list(inner), prefix + route.path)
            elif isinstance(route, Route):
                for method in sorted(route.methods or {"GET"}):
                    if method != "HEAD":
                        yield prefix + route.path, method

    return sorted(set(walk(list(app.routes), "")))


@dataclass
class Target:
    client: TestClient
    routes: list[tuple[str, str]]
    named: dict[str, str]  # path parameter (or resource) -> a real id
    admin: dict[str, str]
    member: dict[str, str]

    @property
    def ids(self) -> list[str]:
        return sorted(set(self.named.values()))

    def id_for(self, route: str, parameter: str) -> str:
        if parameter == "id":
            parameter = "security_group" if "/security-group" in route else "server"
        return self.named.get(parameter, "x")


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    from kumo.api.app import create_app
    from kumo.config import Settings
    from kumo.server import prepare
    from tests.conftest import ADMIN_PASSWORD, password_token

    base = tmp_path_factory.mktemp("fuzz")
    config = Settings(data_dir=base / "data", admin_password=ADMIN_PASSWORD)
    config.identity.password_hash_rounds = 4
    config.network.driver = "user"
    config.host, config.port, config.public_url = "testserver", 80, "http://testserver"
    runtime: Runtime
    runtime, _ = prepare(config)
    images = FakeImages()
    images.add(BootImage(BOOT_IMAGE, "tiny", "active", min_disk=1, min_ram=64,
                         virtual_size=512 * 1024**2, properties={}))
    compute = ComputeService(runtime, FakeHypervisor(), FakeMetadata(base / "md"), images)
    runtime.services["compute"] = compute
    app = create_app(runtime)
    try:
        with TestClient(app, base_url="http://testserver") as client:
            admin = {"X-Auth-Token": password_token(client, "admin", ADMIN_PASSWORD, "admin")}
            yield Target(client, route_table(app), _seed(client, admin), admin,
                         _member(client, admin))
    finally:
        compute.wait_idle()
        runtime.engine.dispose()


def _seed(client: TestClient, admin: dict[str, str]) -> dict[str, str]:
    """Real ids for path parameters, so requests reach past the lookups."""
    named = {"boot_image": BOOT_IMAGE, "flavor_id": "1", "domain_id": "default", "name": "fuzzkey",
             "key": "a", "tag": "t", "request_id": "x"}
    named["image_id"] = client.post("/image/v2/images", headers=admin, json={
        "name": "fuzz", "disk_format": "raw", "container_format": "bare",
        "visibility": "shared"}).json()["id"]
    named["server"] = client.post("/compute/v2.1/servers", headers=admin, json={
        "server": {"name": "fuzz", "imageRef": BOOT_IMAGE, "flavorRef": "1"}}
    ).json()["server"]["id"]
    client.post("/compute/v2.1/os-keypairs", headers=admin, json={"keypair": {"name": "fuzzkey"}})
    for path, key, name in (("/identity/v3/projects", "projects", "project_id"),
                            ("/identity/v3/users", "users", "user_id"),
                            ("/identity/v3/roles", "roles", "role_id"),
                            ("/network/v2.0/security-groups", "security_groups", "security_group")):
        named[name] = client.get(path, headers=admin).json()[key][0]["id"]
    named["member_id"] = named["project_id"]
    return named


def _member(client: TestClient, admin: dict[str, str]) -> dict[str, str]:
    from tests.conftest import password_token

    project = client.post("/identity/v3/projects", headers=admin,
                          json={"project": {"name": "fuzzp"}}).json()["project"]
    user = client.post("/identity/v3/users", headers=admin, json={
        "user": {"name": "fuzzu", "password": "pw-fuzz", "default_project_id": project["id"]}
    }).json()["user"]
    member = client.get("/identity/v3/roles?name=member", headers=admin).json()["roles"][0]
    client.put(f"/identity/v3/projects/{project['id']}/users/{user['id']}/roles/{member['id']}",
               headers=admin)
    return {"X-Auth-Token": password_token(client, "fuzzu", "pw-fuzz", "fuzzp")}


# -- what is sent --------------------------------------------------------------------

# Bodies that are valid (or nearly) for the routes whose path matches the pattern:
# mutating one field gets past the outer checks into the field checks, where wrong
# types used to end in a 500. (The routes themselves come from the app.)
SHAPES: list[tuple[str, Any]] = [
    (r"/auth/tokens$", {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "fuzzu", "domain": {"id": "default"}, "password": "pw-fuzz"}}},
        "scope": {"project": {"name": "fuzzp", "domain": {"id": "default"}}}}}),
    (r"/auth/tokens$", {"auth": {"identity": {"methods": ["token"], "token": {"id": "x"}}}}),
    (r"/projects(/{project_id})?$",
     {"project": {"name": "p", "description": "d", "enabled": True, "tags": ["a"]}}),
    (r"/users(/{user_id})?$", {"user": {"name": "u", "password": "p", "email": "e",
                                         "enabled": True, "default_project_id": "x"}}),
    (r"/password$", {"user": {"password": "p", "original_password": "o"}}),
    (r"/roles$", {"role": {"name": "r", "description": "d"}}),
    (r"/flavors$", {"flavor": {"name": "f", "ram": 64, "vcpus": 1, "disk": 1, "id": "auto",
                               "swap": 0, "rxtx_factor": 1.0, "OS-FLV-EXT-DATA:ephemeral": 0,
                               "os-flavor-access:is_public": True, "description": "d"}}),
    (r"/os-keypairs$", {"keypair": {"name": "k", "type": "ssh",
                                    "public_key": "ssh-ed25519 AAAA x"}}),
    (r"/servers(/{id})?$", {"server": {
        "name": "s", "imageRef": BOOT_IMAGE, "flavorRef": "1", "key_name": "k",
        "networks": "auto", "security_groups": [{"name": "default"}], "metadata": {"a": "b"},
        "user_data": "aGk=", "config_drive": True, "min_count": 1, "description": "d"}}),
    (r"/metadata$", {"metadata": {"a": "b"}}),
    (r"/metadata/{key}$", {"meta": {"a": "b"}}),
    (r"/action$", {"os-stop": None}), (r"/action$", {"os-start": None}),
    (r"/action$", {"reboot": {"type": "HARD"}}),
    (r"/action$", {"createImage": {"name": "snap", "metadata": {}}}),
    (r"/action$", {"os-getConsoleOutput": {"length": 5}}),
    (r"/action$", {"addSecurityGroup": {"name": "default"}}),
    (r"/security-groups(/{id})?$",
     {"security_group": {"name": "g", "description": "d", "stateful": True}}),
    (r"/security-group-rules$", {"security_group_rule": {
        "security_group_id": "x", "direction": "ingress", "ethertype": "IPv4", "protocol": "tcp",
        "port_range_min": 22, "port_range_max": 22, "remote_ip_prefix": "0.0.0.0/0"}}),
    (r"/v2/images$", {"name": "i", "disk_format": "qcow2", "container_format": "bare",
                      "visibility": "private", "min_disk": 1, "min_ram": 1, "tags": ["t"],
                      "protected": False, "os_hidden": False, "owner": "x", "prop": "v"}),
    (r"/v2/images/{image_id}$", [{"op": "replace", "path": "/name", "value": "n"},
                                 {"op": "add", "path": "/x", "value": "y"},
                                 {"op": "remove", "path": "/tags"}]),
    (r"/members$", {"member": "x"}), (r"/members/{member_id}$", {"status": "accepted"}),
    (r"/clean$", {"dry_run": True}),
]
TEMPLATES = [body for _, body in SHAPES]

BAD_VALUES = st.one_of(
    st.none(), st.booleans(), st.just([]), st.just({}), st.just(""), st.just("\ud800"),
    st.builds(lambda: "x" * 70000), st.just(2**63 - 1), st.just(-(2**63)), st.just(-1),
    st.just(0.5), st.just(1e308), st.integers(), st.text(max_size=20), st.just([None]),
    st.just({"": None}),
)
KEYS = st.one_of(st.sampled_from(sorted({k for t in TEMPLATES if isinstance(t, dict)
                                           for k in t})), st.text(max_size=8))


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))


def _replace(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(copy[path[0]], path[1:], new)
    return copy


def _templates_for(path: str) -> list[Any]:
    """The shapes meant for this route; a bare object for routes that take no body."""
    found = [body for pattern, body in SHAPES if re.search(pattern, path)]
    return found or [{}]


@st.composite
def mutated(draw: st.DrawFn, path: str) -> bytes:
    body = draw(st.sampled_from(_templates_for(path)))
    for _ in range(draw(st.sampled_from([1, 1, 1, 2, 3]))):
        body = _replace(body, draw(st.sampled_from(list(_leaves(body)))), draw(BAD_VALUES))
    if isinstance(body, dict) and draw(st.booleans()):
        body = {**body, draw(KEYS): draw(BAD_VALUES)}  # an unknown (or known) field
    return json.dumps(body, ensure_ascii=draw(st.booleans())).encode("utf-8", "surrogatepass")


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(KEYS, inner, max_size=4),
    max_leaves=12,
)

RAW_BODIES = st.one_of(
    st.integers(100, 20000).map(lambda n: b"[" * n + b"]" * n),
    st.integers(100, 5000).map(lambda n: b'{"a":' * n + b"1" + b"}" * n),
    st.just(b'{"name": "\\ud800"}'), st.just(b'"\\udfff"'),
    st.integers(20, 6000).map(lambda n: b'{"n": ' + b"9" * n + b"}"),
    st.just(b'{"n": -18446744073709551616}'), st.just(b'{"n": 1e99999}'), st.just(b"NaN"),
    st.just(b"\xff\xfe{}"), st.just(b'{"a": "\xc3\x28"}'), st.just(b"\xef\xbb\xbf{}"),
    st.builds(lambda: b'{"a": "' + b"x" * (1024 * 1024 + 10) + b'"}'),
    st.binary(max_size=64), st.just(b""), st.just(b"null"), st.just(b"{"),
)

CONTENT_TYPES = st.sampled_from([
    "application/json", "application/json", "application/json", "application/json; charset=utf-8",
    "application/openstack-images-v2.1-json-patch", "application/octet-stream", "text/plain",
    "", "multipart/form-data; boundary=x",
])

def bodies(path: str) -> st.SearchStrategy[bytes]:
    return st.one_of(mutated(path), mutated(path), mutated(path),
                     JSON_VALUES.map(lambda v: json.dumps(v).encode()), RAW_BODIES)


WEIRD_IDS = st.sampled_from(["x" * 300, "..", "%00", "\ud800", "-1", "99999999999999999999999",
                             " ", "a/b", "null"])


def _routes() -> list[tuple[str, str]]:
    """The table at collection time: the app built over settings alone (nothing runs)."""
    from kumo.api.app import create_app
    from kumo.config import Settings

    table_only = Runtime(Settings(), None, None, None)  # type: ignore[arg-type]
    return route_table(create_app(table_only))


ROUTES = _routes()


def _examples(method: str) -> int:
    return BODY_EXAMPLES if method in BODY_METHODS else OTHER_EXAMPLES


@pytest.mark.parametrize(("route", "method"), ROUTES, ids=[f"{m} {p}" for p, m in ROUTES])
def test_no_route_answers_5xx(target: Target, route: str, method: str) -> None:
    @given(data=st.data())
    @settings(max_examples=_examples(method), deadline=None, derandomize=True,
              suppress_health_check=list(HealthCheck))
    def fuzz(data: st.DataObject) -> None:
        send(target, route, method, data)

    fuzz()


LATEST = {"OpenStack-API-Version": "compute latest"}  # every field of the templates is known
GRID_VALUES: list[Any] = [None, [], {}, "", "x", -1, 2**63 - 1, 0.5, True]


def _grid(template: Any) -> Iterator[Any]:
    """The template with each field (and the whole) in turn replaced by each wrong type."""
    for path in _leaves(template):
        for value in GRID_VALUES:
            yield _replace(template, path, value)


BODY_ROUTES = [(p, m) for p, m in ROUTES if m in BODY_METHODS]


@pytest.mark.parametrize(("route", "method"), BODY_ROUTES, ids=[f"{m} {p}" for p, m in BODY_ROUTES])
def test_wrong_type_in_each_field(target: Target, route: str, method: str) -> None:
    """Systematically, every field of the bodies a route takes, with every wrong JSON type."""
    path = route
    while "{" in path:  # the first real id of the right kind gets past the lookups
        head, _, rest = path.partition("{")
        path = head + target.id_for(route, rest.split("}", 1)[0]) + rest.split("}", 1)[1]
    content_type = ("application/openstack-images-v2.1-json-patch" if method == "PATCH"
                    and route.startswith("/image") else "application/json")
    for template in _templates_for(route):
        for body in _grid(template):
            response = target.client.request(
                method, path, content=json.dumps(body),
                headers={**target.admin, "Content-Type": content_type, **LATEST})
            assert response.status_code < 500, (method, path, body, response.text[:500])


def test_every_route_is_fuzzed(target: Target) -> None:
    """The table the fuzz walks is the app's own (no route was left out)."""
    assert target.routes == ROUTES
    assert sum(_examples(m) for _, m in ROUTES) >= 1000


def send(target: Target, template: str, method: str, data: st.DataObject) -> None:
    path = template
    ids = st.one_of(st.sampled_from(target.ids), WEIRD_IDS)
    while "{" in path:
        head, _, rest = path.partition("{")
        value = data.draw(ids, label="id")
        path = head + quote(value.encode("utf-8", "surrogatepass"), safe="") + rest.split("}", 1)[1]
    headers = dict(data.draw(st.sampled_from([target.admin, target.admin, target.member, {}])))
    if data.draw(st.booleans()):
        headers["OpenStack-API-Version"] = data.draw(st.sampled_from(
            ["compute 2.1", "compute latest", "compute 2.96", "compute 2." + "9" * 5000,
             "compute x", "volume 3.0"]))
    query = data.draw(st.sampled_from(["", "?limit=-1", "?limit=" + "9" * 5000, "?marker=x",
                                       "?sort=name:asc", "?name=%ED%A0%80", "?all_tenants=1"]))
    content = b""
    if method in BODY_METHODS:
        content = data.draw(bodies(template), label="body")
        headers["Content-Type"] = data.draw(CONTENT_TYPES, label="content-type")
    response = target.client.request(method, path + query, headers=headers, content=content)
    assert response.status_code < 500, (method, path, content[:300], response.text[:500])
