"""The bounded JSON reader: what it refuses (400/413/415), what it lets through."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from kumo.api.http import MAX_DEPTH, parse_json
from kumo.errors import BadRequest
from tests.conftest import ADMIN_PASSWORD

REFUSED = {
    "nested 10,000 deep": b"[" * 10000 + b"]" * 10000,
    "nested one level too deep": b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1),
    "lone surrogate in a value": b'{"name": "\\ud800"}',
    "lone surrogate in a key": b'{"\\udfff": 1}',
    "NUL in a string": b'{"name": "a\\u0000b"}',
    "2**64 where anything goes": b'{"user": {"name": 18446744073709551616}}',
    "5,000 digits": b'{"n": ' + b"7" * 5000 + b"}",
    "a float beyond double": b'{"n": 1e400}',
    "NaN": b'{"n": NaN}',
    "Infinity": b"-Infinity",
    "invalid UTF-8": b'{"name": "\xc3\x28"}',
    "UTF-16": '{"a": 1}'.encode("utf-16"),
    "truncated": b'{"a": ',
    "empty": b"",
}


@pytest.mark.parametrize("body", REFUSED.values(), ids=list(REFUSED))
def test_refused_documents(body: bytes) -> None:
    with pytest.raises(BadRequest):
        parse_json(body)


def test_accepted_documents() -> None:
    assert parse_json(b'{"a": [1, -2, 3.5, true, null, "\\u00e9\\ud83d\\ude00"]}') == {
        "a": [1, -2, 3.5, True, None, "é😀"]
    }
    assert parse_json(b"[" * MAX_DEPTH + b"]" * MAX_DEPTH)
    assert parse_json(b'{"n": 9223372036854775807, "m": -9223372036854775808}')


def test_each_api_answers_in_its_own_shape(api: TestClient, admin_headers: dict[str, str]) -> None:
    deep = b"[" * 10000 + b"]" * 10000
    json_type = {"Content-Type": "application/json"}
    # No token needed to reach the reader of the token route: still a 400, not a 500.
    keystone = api.post("/identity/v3/auth/tokens", content=deep, headers=json_type)
    assert keystone.status_code == 400
    assert keystone.json()["error"]["code"] == 400
    nova = api.post("/compute/v2.1/flavors", content=b'{"flavor": {"name": "\\ud800"}}',
                    headers={**admin_headers, **json_type})
    assert nova.status_code == 400 and "badRequest" in nova.json()
    neutron = api.post("/network/v2.0/security-groups", content=deep,
                       headers={**admin_headers, **json_type})
    assert neutron.status_code == 400
    assert neutron.json()["NeutronError"]["type"] == "BadRequest"
    glance = api.post("/image/v2/images", content=b'{"name": ' + b"1" * 5000 + b"}",
                      headers={**admin_headers, **json_type})
    assert glance.status_code == 400 and glance.json()["error"]["code"] == 400


def test_too_large_and_wrong_type(api: TestClient, admin_headers: dict[str, str]) -> None:
    big = b'{"name": "' + b"x" * (1024 * 1024) + b'"}'
    response = api.post("/image/v2/images", content=big,
                        headers={**admin_headers, "Content-Type": "application/json"})
    assert response.status_code == 413
    response = api.post("/image/v2/images", content=b"{}",
                        headers={**admin_headers, "Content-Type": "text/plain"})
    assert response.status_code == 415


def test_wrong_types_in_flavors_and_auth(api: TestClient, admin_headers: dict[str, str]) -> None:
    flavor = {"name": "f", "ram": 64, "vcpus": 1, "disk": 1}
    for body in (None, [], "flavor", {"flavor": None}, {"flavor": 5},
                 *({"flavor": {**flavor, "rxtx_factor": bad}} for bad in (None, [], {}, "x", 0)),
                 {"flavor": {**flavor, "os-flavor-access:is_public": "maybe"}}):
        response = api.post("/compute/v2.1/flavors", content=json.dumps(body),
                            headers={**admin_headers, "Content-Type": "application/json"})
        assert response.status_code == 400, (body, response.text)
    assert api.get("/compute/v2.1/flavors?is_public=none", headers=admin_headers).json()
    user = {"password": "x", "domain": {"id": "default"}}
    for ref in ({**user, "name": 2**62}, {**user, "id": [1]}, {**user, "name": {"a": 1}}):
        body = {"auth": {"identity": {"methods": ["password"], "password": {"user": ref}}}}
        assert api.post("/identity/v3/auth/tokens", json=body).status_code == 400
    body = {"auth": {"identity": {"methods": ["password"], "password": {"user": {
        "name": "admin", "password": ADMIN_PASSWORD, "domain": {"id": "default"}}}},
        "scope": {"project": {"id": 7}}}}
    assert api.post("/identity/v3/auth/tokens", json=body).status_code == 400
