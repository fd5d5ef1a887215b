"""An API process places servers with the filter scheduler and defers their work."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from kumo.agent.dispatch import JobDispatch
from kumo.compute.service import ComputeService
from kumo.runtime import Runtime
from tests.agent.conftest import IMAGE_ID, V

Boot = Callable[..., dict[str, Any]]


def jobs(runtime: Runtime, host: str) -> int:
    compute = runtime.services["compute"]
    assert isinstance(compute, JobDispatch)
    return compute.jobs.pending(host)


def test_servers_spread_and_their_spawn_waits_in_their_hosts_queue(
        scaled: Runtime, add_host: Callable[..., None], boot: Boot) -> None:
    add_host("h1", memory_mb=8192)
    add_host("h2", memory_mb=4096, zone="az2")
    first = boot("vm1")
    assert first["OS-EXT-SRV-ATTR:host"] == "h1" and first["status"] == "BUILD"
    assert first["OS-EXT-AZ:availability_zone"] == "nova"
    assert jobs(scaled, "h1") == 1 and jobs(scaled, "h2") == 0
    hosts = [boot(f"vm{n}")["OS-EXT-SRV-ATTR:host"] for n in range(2, 8)]
    # m1.tiny takes 512 MB: h1 (7680 MB usable) keeps more free RAM until it has 7 more
    assert hosts == ["h1"] * 6
    zoned = boot("in-az2", availability_zone="az2")
    assert zoned["OS-EXT-SRV-ATTR:host"] == "h2" and zoned["OS-EXT-AZ:availability_zone"] == "az2"


def test_no_valid_host_puts_the_server_in_error_with_the_reason(
        scaled: Runtime, add_host: Callable[..., None], boot: Boot, client: TestClient,
        admin: dict[str, str]) -> None:
    add_host("h1", memory_mb=4096)
    add_host("h2", memory_mb=8192, seen=300)  # its agent stopped beating
    big = client.post(f"{V}/flavors", headers=admin, json={"flavor": {
        "name": "huge", "ram": 6144, "vcpus": 1, "disk": 1, "id": "huge"}})
    assert big.status_code == 200, big.text
    server = boot("too-big", flavor="huge")
    assert server["status"] == "ERROR" and "OS-EXT-SRV-ATTR:host" in server
    message = server["fault"]["message"]
    assert message.startswith("No valid host was found. There are not enough hosts available.")
    assert "h2: its agent is down" in message
    assert "MEMORY_MB kept 0 (h1: 3584 MB free, needs 6144 MB)" in message
    assert jobs(scaled, "h1") == 0
    assert client.post(f"{V}/servers", headers=admin, json={"server": {
        "name": "x", "imageRef": "11111111-2222-4333-8444-555555555555", "flavorRef": "1",
        "networks": "none", "availability_zone": "az9"}}).status_code == 400


def test_anti_affinity_and_affinity_groups(
        scaled: Runtime, add_host: Callable[..., None], boot: Boot, client: TestClient,
        admin: dict[str, str]) -> None:
    add_host("h1", memory_mb=8192)
    add_host("h2", memory_mb=4096)

    def group(policy: str) -> str:
        made = client.post(f"{V}/os-server-groups", headers=admin, json={
            "server_group": {"name": policy, "policy": policy}})
        assert made.status_code == 200, made.text
        return str(made.json()["server_group"]["id"])

    apart = group("anti-affinity")
    hosts = {boot(f"a{n}", hints={"group": apart})["OS-EXT-SRV-ATTR:host"] for n in range(2)}
    assert hosts == {"h1", "h2"}
    third = boot("a2", hints={"group": apart})
    assert third["status"] == "ERROR"
    assert "ServerGroupAntiAffinityFilter kept 0" in third["fault"]["message"]
    together = group("affinity")
    first = boot("t0", hints={"group": together})["OS-EXT-SRV-ATTR:host"]
    assert first == "h1"
    assert boot("t1", hints={"group": together})["OS-EXT-SRV-ATTR:host"] == first


def test_every_server_action_becomes_a_job_on_the_servers_host(
        scaled: Runtime, add_host: Callable[..., None], boot: Boot) -> None:
    """Actions added to ComputeService later are deferred too, never run here."""
    add_host("h1")
    server = boot("vm1")
    compute = scaled.services["compute"]
    assert isinstance(compute, JobDispatch)
    before = jobs(scaled, "h1")
    names = sorted(n for n in dir(ComputeService) if n.startswith("submit_")
                   and n not in ("submit_spawn", "submit_forwards", "submit_confirm_resize",
                                 "submit_revert_resize"))
    assert len(names) > 15
    for name in names:
        assert getattr(JobDispatch, name) is not getattr(ComputeService, name), name
    # real calls: each job goes to h1's queue with its arguments
    compute.submit_reboot(server["id"], True)
    compute.submit_forwards([server["id"]])
    assert jobs(scaled, "h1") == before + 2


def test_services_hypervisors_and_host_status_follow_heartbeats(
        scaled: Runtime, add_host: Callable[..., None], boot: Boot, client: TestClient,
        admin: dict[str, str]) -> None:
    add_host("h1", memory_mb=8192)
    add_host("h2", memory_mb=4096, zone="az2")
    server = boot("vm1")
    listed = client.get(f"{V}/os-services?binary=nova-compute", headers=admin).json()
    assert [(s["host"], s["zone"], s["state"]) for s in listed["services"]] == [
        ("h1", "nova", "up"), ("h2", "az2", "up")]
    add_host("h1", memory_mb=8192, seen=120)  # no heartbeat for two minutes
    listed = client.get(f"{V}/os-services?binary=nova-compute", headers=admin).json()
    assert [s["state"] for s in listed["services"]] == ["down", "up"]
    hypervisors = client.get(f"{V}/os-hypervisors/detail", headers=admin).json()["hypervisors"]
    assert [(h["hypervisor_hostname"], h["state"], h["memory_mb"]) for h in hypervisors] == [
        ("h1", "down", 8192), ("h2", "up", 4096)]
    shown = client.get(f"{V}/servers/{server['id']}", headers=admin).json()["server"]
    assert shown["host_status"] == "DOWN"
    zones = client.get(f"{V}/os-availability-zone", headers=admin).json()
    assert [z["zoneName"] for z in zones["availabilityZoneInfo"]] == ["az2", "nova"]


def test_an_api_process_has_no_block_storage_and_says_so(
        scaled: Runtime, add_host: Callable[..., None], boot: Boot, client: TestClient,
        admin: dict[str, str]) -> None:
    """Volumes are files of `kumo up`'s data directory: refused before any record."""
    add_host("h1")
    server = boot("vm1")
    made = client.post("/volume/v3/volumes", headers=admin, json={"volume": {"size": 1}})
    assert made.status_code == 503 and "kumo up only" in made.text, made.text
    attach = client.post(f"{V}/servers/{server['id']}/os-volume_attachments", headers=admin,
                         json={"volumeAttachment": {"volumeId": IMAGE_ID}})
    assert attach.status_code == 503, attach.text
    from_volume = client.post(f"{V}/servers", headers=admin, json={"server": {
        "name": "bfv", "flavorRef": "1", "networks": "none", "block_device_mapping_v2": [{
            "boot_index": 0, "uuid": IMAGE_ID, "source_type": "image",
            "destination_type": "volume", "volume_size": 1}]}})
    assert from_volume.status_code == 400 and "Block Storage" in from_volume.text
    listed = client.get(f"{V}/servers", headers=admin).json()["servers"]
    assert [s["name"] for s in listed] == ["vm1"]


def test_scheduler_and_conductor_are_listed_per_api_host(
        scaled: Runtime, add_host: Callable[..., None], client: TestClient,
        admin: dict[str, str]) -> None:
    """Whichever API process answers, each host with API processes is listed once, down
    when none of them beats; this process's own host is up (it is answering)."""
    from datetime import UTC, datetime, timedelta

    from kumo.agent import registry
    from kumo.agent.wiring import host_name
    from kumo.db.engine import session_scope

    add_host("h1")
    with session_scope(scaled.sessions) as session:
        registry.api_beat(session, "zz-api-gone", starting=True)
        registry.api_beat(session, "zz-api-live", starting=True)
        gone = next(r for r in registry.api_hosts(session) if r.host == "zz-api-gone")
        gone.last_seen_at = datetime.now(UTC) - timedelta(seconds=120)
    here = host_name(scaled)
    listed = client.get(f"{V}/os-services", headers=admin).json()["services"]
    rows = sorted((s["binary"], s["host"], s["state"]) for s in listed)
    assert rows == sorted([
        ("nova-compute", "h1", "up"),
        ("nova-conductor", here, "up"), ("nova-scheduler", here, "up"),
        ("nova-conductor", "zz-api-gone", "down"), ("nova-scheduler", "zz-api-gone", "down"),
        ("nova-conductor", "zz-api-live", "up"), ("nova-scheduler", "zz-api-live", "up")])
    assert {s["zone"] for s in listed if s["binary"] != "nova-compute"} == {"internal"}
    old = client.get(f"{V}/os-services", headers={**admin, "OpenStack-API-Version":
                                                  "compute 2.1"}).json()["services"]
    assert len({s["id"] for s in old}) == len(old) == 7  # integer ids, none twice
    again = client.get(f"{V}/os-services", headers={**admin, "OpenStack-API-Version":
                                                    "compute 2.1"}).json()["services"]
    assert [s["id"] for s in again] == [s["id"] for s in old]
