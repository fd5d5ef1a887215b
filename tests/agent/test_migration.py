"""Cold migration through the API: destination choice, the migration record, its jobs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from kumo.agent.dispatch import JobDispatch, host_states
from kumo.agent.models import Migration
from kumo.compute.models import RESIZED, Server
from kumo.compute.service import ComputeService
from kumo.db.engine import session_scope
from kumo.runtime import Runtime
from tests.agent.conftest import V
from tests.compute.conftest import compute, hypervisor, images  # noqa: F401 - fixtures
from tests.compute.test_routes import boot as boot_here

Boot = Callable[..., dict[str, Any]]


def queued(runtime: Runtime, host: str) -> list[str]:
    dispatch = runtime.services["compute"]
    assert isinstance(dispatch, JobDispatch)
    dispatch.jobs.open()
    return [job.task_kwargs["work"] for job in dispatch.jobs.app.job_manager.list_jobs(
        queue=f"host:{host}") if job.status == "todo"]


def test_one_host_has_nowhere_to_migrate_to(
        api: TestClient, admin_headers: dict[str, str], compute: ComputeService) -> None:  # noqa: F811
    server = boot_here(api, admin_headers, compute)
    answer = api.post(f"{V}/servers/{server['id']}/action", json={"migrate": None},
                      headers=admin_headers)
    assert answer.status_code == 400
    assert "No valid host found for cold migrate" in answer.json()["badRequest"]["message"]


def test_migrate_picks_another_host_and_hands_over_to_the_source(
        scaled: Runtime, add_host: Callable[..., None], boot: Boot, client: TestClient,
        admin: dict[str, str]) -> None:
    add_host("h1", memory_mb=8192)
    server = boot("vm1")
    assert server["OS-EXT-SRV-ATTR:host"] == "h1"
    action = f"{V}/servers/{server['id']}/action"
    with session_scope(scaled.sessions) as session:  # as if its agent had booted it
        record = session.get(Server, server["id"])
        assert record is not None
        record.vm_state, record.task_state, record.power_state = "active", None, 1
    refused = client.post(action, json={"migrate": None}, headers=admin)
    assert refused.status_code == 400
    assert "No valid host found for cold migrate" in refused.json()["badRequest"]["message"]
    assert "the server's current host" in refused.json()["badRequest"]["message"]
    add_host("h2", memory_mb=2048)
    add_host("h3", memory_mb=4096)
    missing = client.post(action, json={"migrate": {"host": "h9"}},
                          headers={**admin, "OpenStack-API-Version": "compute 2.56"})
    assert missing.status_code == 404
    assert client.post(action, json={"migrate": {"host": "h2"}},
                       headers={**admin, "OpenStack-API-Version": "compute 2.56"}
                       ).status_code == 202
    shown = client.get(f"{V}/servers/{server['id']}", headers=admin).json()["server"]
    assert shown["status"] == "RESIZE" and shown["OS-EXT-SRV-ATTR:host"] == "h1"
    assert queued(scaled, "h1")[-1] == "submit_migrate_out"
    listed = client.get(f"{V}/os-migrations", headers=admin).json()["migrations"]
    assert [(m["source_compute"], m["dest_compute"], m["status"], m["migration_type"])
            for m in listed] == [("h1", "h2", "pre-migrating", "migration")]
    # the server's resources count on h2 while it is on its way there
    with session_scope(scaled.sessions) as session:
        used = {s.host: s.used_memory_mb for s in host_states(session, 60)}
    assert used == {"h1": 512, "h2": 512, "h3": 0}
    again = client.post(action, json={"migrate": None}, headers=admin)
    assert again.status_code == 409


def test_confirm_goes_to_the_source_and_revert_to_the_destination(
        scaled: Runtime, add_host: Callable[..., None], boot: Boot, client: TestClient,
        admin: dict[str, str]) -> None:
    add_host("h1")
    add_host("h2")
    server = boot("vm1")
    source = server["OS-EXT-SRV-ATTR:host"]
    dest = "h2" if source == "h1" else "h1"
    for verb, host, work in (("confirmResize", source, "submit_migrate_confirm"),
                             ("revertResize", dest, "submit_migrate_revert")):
        with session_scope(scaled.sessions) as session:  # a migration the agents finished
            record = session.get(Server, server["id"])
            assert record is not None
            record.host, record.vm_state, record.task_state = dest, RESIZED, None
            session.add(Migration(server_id=record.id, source_compute=source,
                                  dest_compute=dest, status="finished"))
        answer = client.post(f"{V}/servers/{server['id']}/action", json={verb: None},
                             headers=admin)
        assert answer.status_code in (202, 204), answer.text
        assert queued(scaled, host)[-1] == work
        with session_scope(scaled.sessions) as session:
            for entry in session.query(Migration):
                entry.status = "confirmed"
