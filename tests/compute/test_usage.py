"""os-simple-tenant-usage: hours of running and deleted servers within a window."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.testclient import TestClient

from kumo.compute.service import ComputeService
from tests.compute.test_quotas import project_of
from tests.compute.test_routes import V, boot


def test_usage_counts_live_and_deleted_servers(api: TestClient, admin_headers: dict[str, str],
                                               compute: ComputeService) -> None:
    start = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    kept = boot(api, admin_headers, compute, name="kept")["id"]
    gone = boot(api, admin_headers, compute, name="gone")["id"]
    api.delete(f"{V}/servers/{gone}", headers=admin_headers)
    compute.wait_idle()
    end = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%S")
    pid = project_of(api, admin_headers)
    usage = api.get(f"{V}/os-simple-tenant-usage/{pid}?start={start}&end={end}",
                    headers=admin_headers).json()["tenant_usage"]
    rows = {u["instance_id"]: u for u in usage["server_usages"]}
    assert set(rows) == {kept, gone}
    assert rows[gone]["state"] == "terminated" and rows[gone]["ended_at"] is not None
    assert rows[kept]["ended_at"] is None and rows[kept]["flavor"] == "m1.tiny"
    assert usage["total_memory_mb_usage"] > 0 and usage["total_hours"] > 0
    listing = api.get(f"{V}/os-simple-tenant-usage?start={start}&end={end}&detailed=1",
                      headers=admin_headers).json()["tenant_usages"]
    assert [t["tenant_id"] for t in listing] == [pid]
    backwards = api.get(f"{V}/os-simple-tenant-usage/{pid}?start={end}&end={start}",
                        headers=admin_headers)
    assert backwards.status_code == 400
    empty = api.get(f"{V}/os-simple-tenant-usage/{pid}?start=2001-01-01T00:00:00"
                    "&end=2001-01-02T00:00:00", headers=admin_headers).json()
    assert empty == {"tenant_usage": {}}
