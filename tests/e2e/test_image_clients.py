"""The real python-openstackclient, python-glanceclient and openstacksdk against `kumo up`."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import KumoProcess

pytestmark = pytest.mark.e2e
BIN = Path(sys.executable).parent


def run(
    tool: str, *args: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(BIN / tool), *args], env=env, capture_output=True, text=True, timeout=120
    )
    if check and result.returncode != 0:
        raise AssertionError(f"{tool} {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def osc_json(kumo_env: dict[str, str], *args: str) -> Any:
    return json.loads(run("openstack", *args, "-f", "json", env=kumo_env).stdout)


def password_env(kumo: KumoProcess, user: str, password: str, project: str) -> dict[str, str]:
    """Plain OS_* variables (what glanceclient understands), no clouds.yaml."""
    env = {k: v for k, v in kumo.env().items() if k not in ("OS_CLOUD", "OS_CLIENT_CONFIG_FILE")}
    env.update(
        OS_AUTH_URL=f"{kumo.url}/identity/v3",
        OS_USERNAME=user,
        OS_PASSWORD=password,
        OS_PROJECT_NAME=project,
        OS_USER_DOMAIN_NAME="Default",
        OS_PROJECT_DOMAIN_NAME="Default",
        OS_IDENTITY_API_VERSION="3",
    )
    return env


@pytest.fixture(scope="module")
def qcow2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("images") / "tiny.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "32M"], check=True)
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_openstack_cli_image_lifecycle(kumo_up: KumoProcess, qcow2: Path, tmp_path: Path) -> None:
    env = kumo_up.env()
    name = unique("osc")
    created = osc_json(
        env,
        "image",
        "create",
        "--file",
        str(qcow2),
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        name,
    )
    assert created["status"] == "active"
    assert created["size"] == qcow2.stat().st_size
    listed = osc_json(env, "image", "list")
    assert name in [i["Name"] for i in listed]
    shown = osc_json(env, "image", "show", name)
    assert shown["virtual_size"] == 32 * 1024 * 1024
    saved = tmp_path / "saved.qcow2"
    run("openstack", "image", "save", "--file", str(saved), name, env=env)
    assert saved.read_bytes() == qcow2.read_bytes()
    run(
        "openstack",
        "image",
        "set",
        "--property",
        "os_admin_user=cirros",
        "--tag",
        "blue",
        name,
        env=env,
    )
    shown = osc_json(env, "image", "show", name)
    assert shown["properties"]["os_admin_user"] == "cirros"
    assert shown["tags"] == ["blue"]
    run(
        "openstack", "image", "unset", "--property", "os_admin_user", "--tag", "blue", name, env=env
    )
    shown = osc_json(env, "image", "show", name)
    assert "os_admin_user" not in shown["properties"] and shown["tags"] == []
    run("openstack", "image", "delete", name, env=env)
    gone = run("openstack", "image", "show", name, env=env, check=False)
    assert gone.returncode != 0
    assert (
        "No Image found" in gone.stderr
        or "Could not find" in gone.stderr
        or "No image" in gone.stderr
    )


def test_openstack_cli_refuses_an_unsafe_image(kumo_up: KumoProcess, tmp_path: Path) -> None:
    base = tmp_path / "base.qcow2"
    overlay = tmp_path / "overlay.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(base), "16M"], check=True)
    subprocess.run(
        ["qemu-img", "create", "-q", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)],
        check=True,
    )
    env = kumo_up.env()
    name = unique("unsafe")
    result = run(
        "openstack",
        "image",
        "create",
        "--file",
        str(overlay),
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        name,
        env=env,
        check=False,
    )
    assert result.returncode != 0
    assert "backing" in result.stderr
    # The SDK deletes the image after a failed upload; the server put it back to
    # queued first. Either way no active image with this name exists.
    left = osc_json(env, "image", "list", "--name", name)
    assert [i["Status"] for i in left if i["Status"] == "active"] == []


def test_glance_cli_seed_command(kumo_up: KumoProcess, qcow2: Path, tmp_path: Path) -> None:
    env = password_env(kumo_up, "admin", kumo_up.password, "admin")
    name = unique("CirrOS 0.3.3")
    out = run(
        "glance",
        "image-create",
        "--name",
        name,
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--visibility",
        "public",
        "--file",
        str(qcow2),
        env=env,
    ).stdout
    assert "active" in out and "public" in out
    image_id = next(
        line.split("|")[2].strip() for line in out.splitlines() if line.startswith("| id ")
    )
    got = tmp_path / "got.qcow2"
    run("glance", "image-download", "--file", str(got), image_id, env=env)
    assert got.read_bytes() == qcow2.read_bytes()
    assert name in run("glance", "image-list", env=env).stdout
    run("glance", "image-delete", image_id, env=env)


def test_openstacksdk_upload_and_verified_download(kumo_up: KumoProcess, qcow2: Path) -> None:
    import openstack
    from openstack.config import loader

    region = loader.OpenStackConfig(config_files=[str(kumo_up.clouds_yaml)]).get_one("kumo")
    conn = openstack.connection.Connection(config=region)
    try:
        image = conn.image.create_image(
            name=unique("sdk"),
            filename=str(qcow2),
            disk_format="qcow2",
            container_format="bare",
            wait=True,
        )
        fetched = conn.image.get_image(image.id)
        assert fetched.status == "active"
        # download_image checks os_hash_value / checksum and raises on a mismatch.
        response = conn.image.download_image(fetched)
        assert response.content == qcow2.read_bytes()
        conn.image.delete_image(fetched)
    finally:
        conn.close()


def test_project_isolation_protection_and_sharing(
    kumo_up: KumoProcess, qcow2: Path, tmp_path: Path
) -> None:
    admin = kumo_up.env()
    suffix = uuid.uuid4().hex[:6]
    users = {}
    for who in ("owner", "other"):
        project, user = f"{who}-p-{suffix}", f"{who}-u-{suffix}"
        run("openstack", "project", "create", project, env=admin)
        run(
            "openstack",
            "user",
            "create",
            "--project",
            project,
            "--password",
            "pw-" + user,
            user,
            env=admin,
        )
        run("openstack", "role", "add", "--project", project, "--user", user, "member", env=admin)
        users[who] = password_env(kumo_up, user, "pw-" + user, project)
    owner, other = users["owner"], users["other"]
    name = unique("private")
    created = osc_json(
        owner,
        "image",
        "create",
        "--file",
        str(qcow2),
        "--disk-format",
        "qcow2",
        "--container-format",
        "bare",
        "--private",
        "--protected",
        name,
    )
    image_id = created["id"]
    assert name not in [i["Name"] for i in osc_json(other, "image", "list")]
    assert run("openstack", "image", "show", image_id, env=other, check=False).returncode != 0
    stolen = tmp_path / "stolen"
    assert (
        run(
            "openstack", "image", "save", "--file", str(stolen), image_id, env=other, check=False
        ).returncode
        != 0
    )
    # Protected: even the owner cannot delete it.
    assert run("openstack", "image", "delete", image_id, env=owner, check=False).returncode != 0
    assert osc_json(owner, "image", "show", image_id)["status"] == "active"
    # Shared with the other project: visible once the member accepts.
    other_project = osc_json(admin, "project", "show", f"other-p-{suffix}")["id"]
    run("openstack", "image", "set", "--shared", image_id, env=owner)
    # As admin: the owner's OSC cannot look the other project up in Keystone (403).
    run("openstack", "image", "add", "project", image_id, other_project, env=admin)
    assert name not in [i["Name"] for i in osc_json(other, "image", "list")]
    run("openstack", "image", "set", "--accept", image_id, env=other)
    assert name in [i["Name"] for i in osc_json(other, "image", "list")]
    run("openstack", "image", "save", "--file", str(stolen), image_id, env=other)
    assert stolen.read_bytes() == qcow2.read_bytes()
    run("openstack", "image", "set", "--unprotected", image_id, env=owner)
    run("openstack", "image", "delete", image_id, env=owner)
