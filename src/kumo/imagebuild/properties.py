"""Glance properties an image states about itself, read without booting or mounting it.

OpenStack's image property keys (`os_distro`, `os_version`, `os_admin_user`, ...)
are usually typed by hand at upload; kumo reads them from the image instead:

- `os_distro` / `os_version` from `/etc/os-release` (`ID`, `VERSION_ID`);
- `os_admin_user` from cloud-init's `system_info.default_user.name`
  (`/etc/cloud/cloud.cfg`, then `cloud.cfg.d/*.cfg` in order, later files winning);
- anything in `/etc/kumo/image-properties` (`key=value` lines), which kumo's own
  script-only images (the tiny image has no cloud-init) carry.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kumo.imagebuild.lint.view import ImageView
from kumo.imagebuild.reader import Ext4, ImageUnreadable, open_source

KUMO_PROPERTIES = "/etc/kumo/image-properties"
CLOUD_CFG = "/etc/cloud/cloud.cfg"
CLOUD_CFG_D = "/etc/cloud/cloud.cfg.d"


def _key_values(text: str) -> dict[str, str]:
    found = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        found[key.strip()] = value.strip().strip('"').strip("'")
    return found


def _default_user(fs: Ext4) -> str | None:
    name = None
    paths = [CLOUD_CFG] + [
        f"{CLOUD_CFG_D}/{n}" for n in fs.listdir(CLOUD_CFG_D) if n.endswith(".cfg")
    ]
    for path in paths:
        text = fs.text(path)
        if text is None:
            continue
        try:
            document: Any = yaml.safe_load(text)
        except yaml.YAMLError:
            continue
        user = (document or {}).get("system_info", {}) if isinstance(document, dict) else {}
        user = user.get("default_user") if isinstance(user, dict) else None
        if isinstance(user, dict) and isinstance(user.get("name"), str):
            name = user["name"]
    return name


def properties_of_root(fs: Ext4) -> dict[str, str]:
    """The properties the root filesystem `fs` states about its image."""
    found: dict[str, str] = {}
    release = _key_values(fs.text("/etc/os-release") or "")
    if release.get("ID"):
        found["os_distro"] = release["ID"]
    if release.get("VERSION_ID"):
        found["os_version"] = release["VERSION_ID"]
    user = _default_user(fs)
    if user:
        found["os_admin_user"] = user
    found.update(_key_values(fs.text(KUMO_PROPERTIES) or ""))
    return found


def detect_properties(path: Path, fmt: str | None = None) -> dict[str, str]:
    """Properties read from the raw or qcow2 image at `path`; {} when it has no Linux root."""
    try:
        with open_source(Path(path), fmt) as source:
            view = ImageView(source)
            return {} if view.root is None else properties_of_root(view.root)
    except ImageUnreadable:
        return {}
