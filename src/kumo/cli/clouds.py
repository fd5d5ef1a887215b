"""Which cloud to talk to: clouds.yaml (and OS_* variables) read the way openstacksdk does.

`load_cloud("kumo")` finds the first clouds.yaml in openstacksdk's search order, merges a
secure.yaml beside it, and falls back to OS_AUTH_URL and friends. Every problem is a
`CLIError` with one line for the terminal.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml

DEFAULT_CLOUD = "kumo"


class CLIError(Exception):
    """A failure to show the user as one line; `status` is the HTTP status if any."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def fail(message: str) -> NoReturn:
    raise CLIError(message)


@dataclass
class CloudConfig:
    """The auth settings of one cloud, as clouds.yaml (or OS_* variables) give them."""

    name: str
    auth_url: str
    username: str | None = None
    user_id: str | None = None
    password: str = ""
    project_name: str | None = None
    project_id: str | None = None
    user_domain: dict[str, str] = field(default_factory=lambda: {"name": "Default"})
    project_domain: dict[str, str] = field(default_factory=lambda: {"name": "Default"})
    region_name: str | None = None
    interface: str = "public"
    verify: bool | str = True
    source: str = ""


def clouds_yaml_candidates(config_file: Path | None = None) -> list[Path]:
    """Where clouds.yaml is looked for, in openstacksdk's order (first existing wins)."""
    paths: list[Path] = []
    if config_file is not None:
        return [Path(config_file)]
    if os.environ.get("OS_CLIENT_CONFIG_FILE"):
        paths.append(Path(os.environ["OS_CLIENT_CONFIG_FILE"]))
    for directory in (Path.cwd(), Path("~/.config/openstack").expanduser(), Path("/etc/openstack")):
        paths += [directory / "clouds.yaml", directory / "clouds.yml"]
    return paths


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        fail(f"{path}: not valid YAML: {exc}")
    except OSError as exc:
        fail(f"{path}: {exc.strerror}")
    return loaded if isinstance(loaded, dict) else {}


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _domain(auth: Mapping[str, Any], kind: str) -> dict[str, str]:
    for key in (f"{kind}_domain_id", "domain_id"):
        if auth.get(key):
            return {"id": str(auth[key])}
    for key in (f"{kind}_domain_name", "domain_name"):
        if auth.get(key):
            return {"name": str(auth[key])}
    return {"name": "Default"}


def _from_entry(name: str, entry: Mapping[str, Any], source: str) -> CloudConfig:
    auth = entry.get("auth") or {}
    if not auth.get("auth_url"):
        fail(f"cloud {name!r} in {source} has no auth.auth_url")
    verify: bool | str = True
    if entry.get("verify") is False or entry.get("insecure") is True:
        verify = False
    elif entry.get("cacert"):
        verify = str(entry["cacert"])
    return CloudConfig(
        name=name,
        auth_url=str(auth["auth_url"]),
        username=auth.get("username"),
        user_id=auth.get("user_id"),
        password=str(auth.get("password") or ""),
        project_name=auth.get("project_name") or auth.get("tenant_name"),
        project_id=auth.get("project_id") or auth.get("tenant_id"),
        user_domain=_domain(auth, "user"),
        project_domain=_domain(auth, "project"),
        region_name=entry.get("region_name"),
        interface=str(entry.get("interface") or "public"),
        verify=verify,
        source=source,
    )


def _from_environment(name: str) -> CloudConfig | None:
    env = os.environ
    if not env.get("OS_AUTH_URL"):
        return None
    auth = {
        key: env[f"OS_{key.upper()}"]
        for key in (
            "auth_url", "username", "user_id", "password", "project_name", "project_id",
            "user_domain_name", "user_domain_id", "project_domain_name", "project_domain_id",
        )
        if env.get(f"OS_{key.upper()}")
    }
    entry = {"auth": auth, "region_name": env.get("OS_REGION_NAME"),
             "interface": env.get("OS_INTERFACE")}
    return _from_entry(name, entry, "the OS_* environment variables")


def load_cloud(cloud: str | None = None, config_file: Path | None = None) -> CloudConfig:
    """The settings of `cloud` (default OS_CLOUD, then "kumo") from clouds.yaml.

    Like openstacksdk, the first clouds.yaml found is used, with secure.yaml next to it
    merged in; when it has no such cloud, OS_AUTH_URL and friends are the fallback.
    """
    name = cloud or os.environ.get("OS_CLOUD") or DEFAULT_CLOUD
    candidates = clouds_yaml_candidates(config_file)
    found = next((path for path in candidates if path.is_file()), None)
    if found is not None:
        clouds = _load_yaml(found).get("clouds") or {}
        secure = found.with_name("secure.yaml")
        if secure.is_file():
            clouds = _merge(clouds, _load_yaml(secure).get("clouds") or {})
        if isinstance(clouds.get(name), dict):
            return _from_entry(name, clouds[name], str(found))
    from_env = _from_environment(name)
    if from_env is not None:
        return from_env
    if found is not None:
        fail(f"no cloud named {name!r} in {found}")
    fail(
        f"no clouds.yaml found (looked at {', '.join(map(str, candidates[:3]))}, ...) and "
        "OS_AUTH_URL is not set; start kumo with `kumo up`, which writes one"
    )
