"""kumo.cli.client: clouds.yaml lookup, Keystone auth against a real kumo, errors, streams."""

from __future__ import annotations

import hashlib
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from kumo.cli.client import CLIError, CloudClient, CloudConfig, connect, error_message, load_cloud
from tests.conftest import KumoProcess


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    """No OS_* from the caller's shell, no clouds.yaml in cwd or HOME."""
    import os

    for key in list(os.environ):
        if key.startswith("OS_"):
            monkeypatch.delenv(key)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    yield


def write_clouds(path: Path, clouds: dict[str, object]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"clouds": clouds}))
    return path


def entry(url: str, password: str = "pw", **extra: object) -> dict[str, object]:
    return {
        "auth": {"auth_url": url, "username": "admin", "password": password,
                 "project_name": "admin", "user_domain_name": "Default",
                 "project_domain_name": "Default"},
        **extra,
    }


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ------------------------------------------------------------------ clouds.yaml


def test_os_client_config_file_wins_over_cwd_and_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_clouds(tmp_path / "clouds.yaml", {"kumo": entry("http://cwd/identity/v3")})
    write_clouds(tmp_path / "home/.config/openstack/clouds.yaml",
                 {"kumo": entry("http://home/identity/v3")})
    assert load_cloud().auth_url == "http://cwd/identity/v3"
    explicit = write_clouds(tmp_path / "x/clouds.yaml", {"kumo": entry("http://env/v3")})
    monkeypatch.setenv("OS_CLIENT_CONFIG_FILE", str(explicit))
    assert load_cloud().auth_url == "http://env/v3"


def test_home_clouds_yaml_and_os_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_clouds(tmp_path / "home/.config/openstack/clouds.yaml",
                 {"kumo": entry("http://a/v3"), "other": entry("http://b/v3", region_name="R2")})
    assert load_cloud().name == "kumo"
    monkeypatch.setenv("OS_CLOUD", "other")
    config = load_cloud()
    assert (config.auth_url, config.region_name) == ("http://b/v3", "R2")
    assert load_cloud("kumo").auth_url == "http://a/v3"  # --os-cloud beats OS_CLOUD


def test_secure_yaml_supplies_the_password(tmp_path: Path) -> None:
    write_clouds(tmp_path / "clouds.yaml", {"kumo": entry("http://a/v3", password="")})
    (tmp_path / "secure.yaml").write_text(
        yaml.safe_dump({"clouds": {"kumo": {"auth": {"password": "s3cret"}}}})
    )
    config = load_cloud()
    assert config.password == "s3cret"
    assert config.username == "admin"


def test_environment_is_the_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OS_AUTH_URL", "http://env/identity/v3")
    monkeypatch.setenv("OS_USERNAME", "alice")
    monkeypatch.setenv("OS_PASSWORD", "pw")
    monkeypatch.setenv("OS_PROJECT_NAME", "p1")
    config = load_cloud()
    assert (config.auth_url, config.username, config.project_name) == (
        "http://env/identity/v3", "alice", "p1")


def test_missing_cloud_says_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(CLIError, match=r"no clouds\.yaml found"):
        load_cloud()
    write_clouds(tmp_path / "clouds.yaml", {"other": entry("http://a/v3")})
    with pytest.raises(CLIError, match=r"no cloud named 'kumo' in .*clouds.yaml"):
        load_cloud()


def test_invalid_yaml_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "clouds.yaml").write_text("clouds: [unclosed\n")
    with pytest.raises(CLIError, match="not valid YAML"):
        load_cloud()


# ------------------------------------------------------------------ real kumo


def test_connect_gets_a_token_and_the_catalog(kumo_up: KumoProcess) -> None:
    with connect("kumo", kumo_up.clouds_yaml) as cloud:
        assert cloud.token and cloud.project_id
        assert cloud.endpoint("image") == kumo_up.url + "/image"
        assert cloud.endpoint("compute") == kumo_up.url + "/compute/v2.1"
        assert cloud.endpoint("identity") == kumo_up.url + "/identity/v3"
        # The token works: Keystone validates it for us.
        body = cloud.json("identity", "GET", "/auth/tokens",
                          headers={"X-Subject-Token": cloud.token})
        assert body["token"]["project"]["id"] == cloud.project_id


def test_auth_url_without_version_gets_v3(kumo_up: KumoProcess, tmp_path: Path) -> None:
    path = write_clouds(tmp_path / "c.yaml",
                        {"kumo": entry(kumo_up.url + "/identity", kumo_up.password)})
    with connect(config_file=path) as cloud:
        assert cloud.token


def test_wrong_password_is_one_clear_line(kumo_up: KumoProcess, tmp_path: Path) -> None:
    path = write_clouds(tmp_path / "c.yaml",
                        {"kumo": entry(kumo_up.url + "/identity/v3", "wrong")})
    with pytest.raises(CLIError) as caught:
        connect(config_file=path)
    assert caught.value.status == 401
    assert "authentication failed for user 'admin'" in caught.value.message


def test_kumo_not_running(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/identity/v3"
    path = write_clouds(tmp_path / "c.yaml", {"kumo": entry(url)})
    with pytest.raises(CLIError, match=r"cannot reach kumo at 127\.0\.0\.1:\d+.*kumo up"):
        connect(config_file=path)


def test_server_error_message_reaches_the_user(kumo_up: KumoProcess) -> None:
    with connect("kumo", kumo_up.clouds_yaml) as cloud:
        with pytest.raises(CLIError) as caught:
            cloud.request("identity", "GET", "/projects/does-not-exist")
        assert caught.value.status == 404
        assert caught.value.message.endswith("(HTTP 404)")
        # check=False hands back the response instead
        assert cloud.request("identity", "GET", "/projects/nope", check=False).status_code == 404


def test_expired_token_is_renewed_once(kumo_up: KumoProcess) -> None:
    with connect("kumo", kumo_up.clouds_yaml) as cloud:
        cloud.token = "not-a-valid-token"
        body = cloud.json("identity", "GET", "/auth/projects")
        assert any(project["name"] == "admin" for project in body["projects"])
        assert cloud.token != "not-a-valid-token"


# ------------------------------------------------------------------ error shapes


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"error": {"code": 401, "title": "Unauthorized", "message": "bad token"}}, "bad token"),
        ({"itemNotFound": {"code": 404, "message": "Server x could not be found."}},
         "Server x could not be found."),
        ({"code": 409, "title": "Conflict", "message": "Image is protected"},
         "Image is protected"),
        ({"NeutronError": {"type": "NotFound", "message": "Network y not found",
                           "detail": ""}}, "Network y not found"),
    ],
)
def test_error_message_reads_each_services_shape(body: object, expected: str) -> None:
    response = httpx.Response(400, content=json.dumps(body).encode(),
                              headers={"Content-Type": "application/json"})
    assert error_message(response) == expected


def test_error_message_from_glance_html_text() -> None:
    html = (b"<html><head><title>409 Conflict</title></head><body><h1>409 Conflict</h1>"
            b"Image status transition from active to saving is not allowed</body></html>")
    message = error_message(httpx.Response(409, content=html))
    assert "Image status transition from active to saving is not allowed" in message
    assert "<" not in message


# ------------------------------------------------------------------ streams


def fake_cloud(handler: httpx.MockTransport) -> CloudClient:
    """A client whose token and catalog are set, talking to an in-memory transport.

    The narrow seam (httpx's transport) lets us see exactly what goes over the wire
    for the streaming helpers; the real server is exercised in test_image.py.
    """
    cloud = CloudClient(CloudConfig(name="t", auth_url="http://t/v3"),
                        httpx.Client(transport=handler))
    cloud.token = "tok"
    cloud.catalog = [{"type": "image", "endpoints": [
        {"interface": "public", "region_id": "RegionOne", "url": "http://t/image"}]}]
    return cloud


def test_upload_streams_the_file_with_its_length(tmp_path: Path) -> None:
    source = tmp_path / "data.bin"
    source.write_bytes(bytes(range(256)) * 10_000)  # 2.5 MB: three 1 MiB chunks
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen["headers"] = dict(request.headers)
        seen["body"] = b"".join(request.stream)  # type: ignore[union-attr]
        return httpx.Response(204)

    progress: list[int] = []
    with fake_cloud(httpx.MockTransport(handler)) as cloud:
        cloud.upload("image", "PUT", "/v2/images/x/file", source, progress=progress.append)
    headers = seen["headers"]
    assert isinstance(headers, dict)
    assert headers["content-length"] == str(source.stat().st_size)
    assert "transfer-encoding" not in headers
    assert headers["x-auth-token"] == "tok"
    assert seen["body"] == source.read_bytes()
    assert progress == [1024 * 1024, 1024 * 1024, 2_560_000 - 2 * 1024 * 1024]


def test_download_verifies_before_renaming(tmp_path: Path) -> None:
    payload = b"kumo" * 300_000

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=payload)

    out = tmp_path / "out"
    out.mkdir()
    dest = out / "out.img"
    with fake_cloud(httpx.MockTransport(handler)) as cloud:
        result = cloud.download("image", "/v2/images/x/file", dest)
        assert dest.read_bytes() == payload
        assert result.digests["sha512"] == hashlib.sha512(payload).hexdigest()
        assert result.digests["md5"] == hashlib.md5(payload).hexdigest()

        def refuse(_response: httpx.Response, _digests: dict[str, str]) -> None:
            raise CLIError("mismatch")

        dest2 = out / "refused.img"
        with pytest.raises(CLIError, match="mismatch"):
            cloud.download("image", "/v2/images/x/file", dest2, verify=refuse)
    assert not dest2.exists()
    assert sorted(p.name for p in out.iterdir()) == ["out.img"]  # no .part left


def test_download_error_leaves_no_file(tmp_path: Path) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"code": 404, "title": "Not Found",
                                         "message": "No image found with ID x"})

    out = tmp_path / "out"
    out.mkdir()
    with fake_cloud(httpx.MockTransport(handler)) as cloud, pytest.raises(
        CLIError, match=r"No image found with ID x \(HTTP 404\)"
    ):
        cloud.download("image", "/v2/images/x/file", out / "out.img")
    assert list(out.iterdir()) == []
