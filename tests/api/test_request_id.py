"""Every response carries a request id; instance actions record the same one; one log line each."""

from __future__ import annotations

import logging
import re

import pytest
from starlette.testclient import TestClient

from tests.compute.test_routes import V

REQ_ID = re.compile(r"^req-[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[0-9a-f]{4}-[0-9a-f]{12}$")


@pytest.mark.parametrize("path", ["/identity/v3", "/image/v2/images", "/compute/v2.1/flavors",
                                  "/network/v2.0/networks", "/healthcheck", "/no/such/thing",
                                  "/image/v2/images/not-there"])
def test_every_response_has_a_fresh_request_id(api: TestClient, admin_headers: dict[str, str],
                                               path: str) -> None:
    first = api.get(path, headers=admin_headers).headers.get("x-openstack-request-id", "")
    second = api.get(path, headers=admin_headers).headers.get("x-openstack-request-id", "")
    assert REQ_ID.match(first) and REQ_ID.match(second) and first != second


def test_compute_also_sends_x_compute_request_id(api: TestClient,
                                                 admin_headers: dict[str, str]) -> None:
    response = api.get(f"{V}/flavors", headers=admin_headers)
    assert response.headers["x-compute-request-id"] == response.headers["x-openstack-request-id"]
    image = api.get("/image/v2/images", headers=admin_headers)
    assert "x-compute-request-id" not in image.headers


def test_errors_and_unauthenticated_calls_carry_it(api: TestClient) -> None:
    response = api.get(f"{V}/servers")
    assert response.status_code == 401
    assert REQ_ID.match(response.headers["x-openstack-request-id"])
    assert REQ_ID.match(response.headers["x-compute-request-id"])


def test_an_inbound_id_does_not_replace_the_local_one(api: TestClient,
                                                      admin_headers: dict[str, str]) -> None:
    mine = "req-11111111-2222-4333-8444-555555555555"
    response = api.get("/image/v2/images",
                       headers={**admin_headers, "X-OpenStack-Request-ID": mine})
    assert response.headers["x-openstack-request-id"] != mine


def test_one_log_line_per_request(api: TestClient, admin_headers: dict[str, str],
                                  caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="kumo.api.access"):
        response = api.get("/image/v2/images?limit=1", headers=admin_headers)
    request_id = response.headers["x-openstack-request-id"]
    lines = [r.getMessage() for r in caplog.records if r.name == "kumo.api.access"]
    mine = [line for line in lines if request_id in line]
    assert len(mine) == 1
    assert re.search(r'"GET /image/v2/images\?limit=1" status: 200 time: \d+\.\d{4}', mine[0])
