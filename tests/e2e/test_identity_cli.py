"""The real `openstack` CLI managing projects, users and roles on a running `kumo up`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KumoProcess

pytestmark = pytest.mark.e2e

OPENSTACK = str(Path(sys.executable).with_name("openstack"))


def openstack(
    kumo: KumoProcess, *args: str, env: dict[str, str] | None = None, check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [OPENSTACK, *args], env=env or kumo.env(), capture_output=True, text=True, timeout=120
    )
    if check:
        assert result.returncode == 0, f"openstack {' '.join(args)}:\n{result.stderr}"
    return result


def as_json(kumo: KumoProcess, *args: str, env: dict[str, str] | None = None) -> Any:
    return json.loads(openstack(kumo, *args, "-f", "json", env=env).stdout)


def user_env(kumo: KumoProcess, user: str, password: str, project: str) -> dict[str, str]:
    """Environment for the CLI acting as `user` in `project` (no clouds.yaml)."""
    env = kumo.env()
    del env["OS_CLOUD"]
    env.update(
        OS_CLIENT_CONFIG_FILE=str(kumo.data_dir.parent / "no-clouds.yaml"),
        OS_AUTH_URL=f"{kumo.url}/identity/v3",
        OS_IDENTITY_API_VERSION="3",
        OS_USERNAME=user,
        OS_PASSWORD=password,
        OS_PROJECT_NAME=project,
        OS_USER_DOMAIN_NAME="Default",
        OS_PROJECT_DOMAIN_NAME="Default",
    )
    return env


def test_project_lifecycle(kumo_up: KumoProcess) -> None:
    created = as_json(kumo_up, "project", "create", "--description", "lab", "cli-p1")
    assert (created["name"], created["description"], created["enabled"]) == ("cli-p1", "lab", True)
    names = {p["Name"] for p in as_json(kumo_up, "project", "list")}
    assert {"admin", "cli-p1"} <= names

    openstack(kumo_up, "project", "set", "--description", "lab 2", "--disable", "cli-p1")
    shown = as_json(kumo_up, "project", "show", "cli-p1")
    assert (shown["id"], shown["description"], shown["enabled"]) == (created["id"], "lab 2", False)

    duplicate = openstack(kumo_up, "project", "create", "cli-p1", check=False)
    assert duplicate.returncode != 0 and "409" in duplicate.stderr

    openstack(kumo_up, "project", "delete", "cli-p1")
    assert "cli-p1" not in {p["Name"] for p in as_json(kumo_up, "project", "list")}
    missing = openstack(kumo_up, "project", "show", "cli-p1", check=False)
    assert missing.returncode != 0


def test_user_and_role_flow(kumo_up: KumoProcess) -> None:
    project = as_json(kumo_up, "project", "create", "cli-p2")
    user = as_json(
        kumo_up, "user", "create", "--project", "cli-p2", "--password", "s3cret", "cli-alice"
    )
    assert user["default_project_id"] == project["id"]
    assert "cli-alice" in {u["Name"] for u in as_json(kumo_up, "user", "list")}
    assert {r["Name"] for r in as_json(kumo_up, "role", "list")} >= {"admin", "member", "reader"}

    openstack(kumo_up, "role", "add", "--project", "cli-p2", "--user", "cli-alice", "member")
    rows = as_json(kumo_up, "role", "assignment", "list", "--names", "--user", "cli-alice")
    assert [(r["Role"], r["Project"]) for r in rows] == [("member", "cli-p2@Default")]
    alice = user_env(kumo_up, "cli-alice", "s3cret", "cli-p2")
    token = as_json(kumo_up, "token", "issue", env=alice)
    assert token["project_id"] == project["id"]

    # The admin resets the password: the old one stops working, the new one works.
    openstack(kumo_up, "user", "set", "--password", "n3w", "cli-alice")
    refused = openstack(kumo_up, "token", "issue", env=alice, check=False)
    assert refused.returncode != 0 and "401" in refused.stderr
    alice = user_env(kumo_up, "cli-alice", "n3w", "cli-p2")
    openstack(kumo_up, "token", "issue", env=alice)

    openstack(kumo_up, "role", "remove", "--project", "cli-p2", "--user", "cli-alice", "member")
    assert as_json(kumo_up, "role", "assignment", "list", "--user", "cli-alice") == []
    no_role = openstack(kumo_up, "token", "issue", env=alice, check=False)
    assert no_role.returncode != 0

    openstack(kumo_up, "role", "add", "--project", "cli-p2", "--user", "cli-alice", "reader")
    openstack(kumo_up, "user", "delete", "cli-alice")
    assert "cli-alice" not in {u["Name"] for u in as_json(kumo_up, "user", "list")}
    left = as_json(kumo_up, "role", "assignment", "list", "--project", "cli-p2")
    assert left == []
    openstack(kumo_up, "project", "delete", "cli-p2")


def test_member_cannot_write_identity_and_sees_only_its_project(kumo_up: KumoProcess) -> None:
    openstack(kumo_up, "project", "create", "cli-p3")
    openstack(kumo_up, "project", "create", "cli-other")
    openstack(kumo_up, "user", "create", "--project", "cli-p3", "--password", "pw", "cli-bob")
    openstack(kumo_up, "role", "add", "--project", "cli-p3", "--user", "cli-bob", "member")
    bob = user_env(kumo_up, "cli-bob", "pw", "cli-p3")

    assert [p["Name"] for p in as_json(kumo_up, "project", "list", env=bob)] == ["cli-p3"]
    assert as_json(kumo_up, "project", "show", "cli-p3", env=bob)["name"] == "cli-p3"
    assert openstack(kumo_up, "project", "show", "admin", env=bob, check=False).returncode != 0
    assert [u["Name"] for u in as_json(kumo_up, "user", "list", env=bob)] == ["cli-bob"]

    for command in (
        ("project", "create", "cli-evil"),
        ("user", "create", "--password", "x", "cli-evil"),
        ("user", "set", "--password", "x", "cli-bob"),
    ):
        result = openstack(kumo_up, *command, env=bob, check=False)
        assert result.returncode != 0, command
        assert "403" in result.stderr, (command, result.stderr)
    # Another project is invisible to bob, so he cannot even name it for deletion.
    gone = openstack(kumo_up, "project", "delete", "cli-other", env=bob, check=False)
    assert gone.returncode != 0
    # The SDK swallows a refused grant; what matters is that nothing was granted.
    openstack(kumo_up, "role", "add", "--project", "cli-p3", "--user", "cli-bob", "admin",
              env=bob, check=False)
    rows = as_json(kumo_up, "role", "assignment", "list", "--names", "--user", "cli-bob")
    assert [r["Role"] for r in rows] == ["member"]
    names = {p["Name"] for p in as_json(kumo_up, "project", "list")}
    assert "cli-evil" not in names and "cli-other" in names

    for name in ("cli-bob",):
        openstack(kumo_up, "user", "delete", name)
    openstack(kumo_up, "project", "delete", "cli-p3", "cli-other")
