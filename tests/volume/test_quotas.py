"""Quotas per project (volumes, snapshots, gigabytes) and GET /limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.testclient import TestClient

from tests.volume.conftest import LATEST, V3


def test_defaults_usage_and_enforcement(api: TestClient, headers: dict[str, str],
                                        make_volume: Callable[..., dict[str, Any]],
                                        make_project_user: Callable[..., dict[str, str]]) -> None:
    alice = {**make_project_user("p1", "alice"), **LATEST}
    made = make_volume(3, who=alice)
    project = made["os-vol-tenant-attr:tenant_id"]
    shown = api.get(f"{V3}/os-quota-sets/{project}?usage=true", headers=alice).json()
    quota = shown["quota_set"]
    assert quota["volumes"] == {"limit": 10, "in_use": 1, "reserved": 0, "allocated": 0}
    assert quota["gigabytes"]["in_use"] == 3 and quota["gigabytes"]["limit"] == 1000
    assert api.get(f"{V3}/os-quota-sets/{project}/defaults", headers=alice).json()[
        "quota_set"]["snapshots"] == 10

    # Only an admin sets limits; below current usage is refused.
    assert api.put(f"{V3}/os-quota-sets/{project}", json={"quota_set": {"volumes": 1}},
                   headers=alice).status_code == 403
    low = api.put(f"{V3}/os-quota-sets/{project}", json={"quota_set": {"gigabytes": 2}},
                  headers=headers)
    assert low.status_code == 400 and "Current usage is 3" in low.text
    set_ = api.put(f"{V3}/os-quota-sets/{project}", json={"quota_set": {
        "volumes": 2, "gigabytes": 5, "snapshots": 0}}, headers=headers)
    assert set_.status_code == 200
    assert set_.json()["quota_set"]["volumes"] == 2

    too_big = api.post(f"{V3}/volumes", json={"volume": {"size": 3}}, headers=alice)
    assert too_big.status_code == 413
    assert too_big.json()["overLimit"]["message"] == (
        "VolumeSizeExceedsAvailableQuota: Requested volume or snapshot exceeds allowed "
        "gigabytes quota. Requested 3G, quota is 5G and 3G has been consumed.")
    make_volume(1, who=alice)
    third = api.post(f"{V3}/volumes", json={"volume": {"size": 1}}, headers=alice)
    assert third.status_code == 413
    assert "Maximum number of volumes allowed (2) exceeded" in third.text
    snap = api.post(f"{V3}/snapshots", json={"snapshot": {"volume_id": made["id"]}},
                    headers=alice)
    assert snap.status_code == 413 and "Maximum number of snapshots allowed (0)" in snap.text
    grow = api.post(f"{V3}/volumes/{made['id']}/action", json={"os-extend": {"new_size": 9}},
                    headers=alice)
    assert grow.status_code == 413

    limits = api.get(f"{V3}/limits", headers=alice).json()["limits"]["absolute"]
    assert (limits["maxTotalVolumes"], limits["totalVolumesUsed"]) == (2, 2)
    assert (limits["maxTotalVolumeGigabytes"], limits["totalGigabytesUsed"]) == (5, 4)

    assert api.delete(f"{V3}/os-quota-sets/{project}", headers=headers).status_code == 200
    assert api.get(f"{V3}/os-quota-sets/{project}", headers=alice).json()["quota_set"][
        "volumes"] == 10


def test_quota_of_another_project_is_hidden_and_bad_keys_refused(
        api: TestClient, headers: dict[str, str],
        make_project_user: Callable[..., dict[str, str]]) -> None:
    bob = {**make_project_user("p2", "bob"), **LATEST}
    other = "0123456789abcdef0123456789abcdef"
    assert api.get(f"{V3}/os-quota-sets/{other}", headers=bob).status_code == 404
    bad = api.put(f"{V3}/os-quota-sets/{other}", json={"quota_set": {"wheels": 4}},
                  headers=headers)
    assert bad.status_code == 400 and "Bad key(s) in quota set: wheels" in bad.text
    unlimited = api.put(f"{V3}/os-quota-sets/{other}", json={"quota_set": {"volumes": -1}},
                        headers=headers)
    assert unlimited.json()["quota_set"]["volumes"] == -1
