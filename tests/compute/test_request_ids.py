"""Instance actions record the request id the API answered with (x-compute-request-id)."""

from __future__ import annotations

from starlette.testclient import TestClient

from kumo.compute.service import ComputeService
from tests.compute.conftest import IMAGE_ID
from tests.compute.test_routes import V, mv


def test_instance_action_records_the_response_request_id(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService) -> None:
    body = {"server": {"name": "vm1", "imageRef": IMAGE_ID,
                       "flavorRef": "1", "networks": "auto"}}
    created = api.post(f"{V}/servers", json=body, headers=mv(admin_headers, "2.96"))
    assert created.status_code == 202, created.text
    compute.wait_idle()
    sid = created.json()["server"]["id"]
    stop = api.post(f"{V}/servers/{sid}/action", json={"os-stop": None}, headers=admin_headers)
    assert stop.status_code == 202
    compute.wait_idle()
    actions = api.get(f"{V}/servers/{sid}/os-instance-actions", headers=admin_headers).json()
    by_action = {a["action"]: a["request_id"] for a in actions["instanceActions"]}
    assert by_action["create"] == created.headers["x-compute-request-id"]
    assert by_action["stop"] == stop.headers["x-openstack-request-id"]
    one = api.get(f"{V}/servers/{sid}/os-instance-actions/{by_action['create']}",
                  headers=admin_headers)
    assert one.status_code == 200 and one.json()["instanceAction"]["action"] == "create"
