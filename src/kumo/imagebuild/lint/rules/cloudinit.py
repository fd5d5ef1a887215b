"""Keys, user data and a resized root at boot: cloud-init (or a script) and growpart."""

from __future__ import annotations

from typing import Any

import yaml

from kumo.imagebuild.lint.base import Edit, Finding, Rule, Severity, WriteFile
from kumo.imagebuild.lint.view import ImageView

CLOUD_INIT_BINS = ("/usr/bin/cloud-init", "/usr/local/bin/cloud-init")
# Datasources that reach an OpenStack cloud: its metadata service or its config drive.
OPENSTACK_SOURCES = {"OpenStack", "ConfigDrive", "Ec2"}
DATASOURCES_FILE = "/etc/cloud/cloud.cfg.d/95-kumo-datasources.cfg"
DATASOURCES = "datasource_list: [ NoCloud, ConfigDrive, OpenStack, Ec2, None ]\n"
METADATA_MARKERS = ("169.254.169.254", "config-2", "openstack/latest/meta_data.json")
GROWPART_BINS = ("/usr/bin/growpart", "/usr/sbin/growpart", "/bin/growpart", "/sbin/growpart")
GROWROOT = "/usr/share/initramfs-tools/scripts/local-bottom/growroot"


def cloud_config(view: ImageView) -> tuple[dict[str, Any], list[str]]:
    """cloud.cfg merged with cloud.cfg.d/*.cfg (later files win), and unreadable files."""
    merged: dict[str, Any] = {}
    broken = []
    for path in ["/etc/cloud/cloud.cfg", *sorted(view.glob("/etc/cloud/cloud.cfg.d", "*.cfg"))]:
        text = view.text(path)
        if text is None:
            continue
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError:
            broken.append(path)
            continue
        if isinstance(data, dict):
            merged.update(data)
    return merged, broken


def has_cloud_init(view: ImageView) -> bool:
    return any(view.is_file(p) for p in CLOUD_INIT_BINS)


class CloudInit(Rule):
    id = "cloud-init"
    severity = Severity.error
    title = "cloud-init with a datasource that reaches OpenStack"
    fix = ("install cloud-init and keep OpenStack, ConfigDrive or Ec2 in datasource_list "
           f"(for example in {DATASOURCES_FILE})")

    def check(self, view: ImageView) -> list[Finding]:
        if not has_cloud_init(view):
            scripts = view.scripts_mentioning(*METADATA_MARKERS)
            if scripts:
                return [self.finding(
                    f"no cloud-init; {scripts[0]} fetches metadata itself: keys and "
                    "user data work, cloud-config (users, packages, ...) does not",
                    severity=Severity.warning, paths=tuple(scripts), fixable=False,
                )]
            return [self.finding(
                "no cloud-init and no script that reads http://169.254.169.254 or a "
                "config drive: instances will not get their SSH key, hostname or user data",
                fixable=False,
            )]
        if view.exists("/etc/cloud/cloud-init.disabled"):
            return [self.finding(
                "/etc/cloud/cloud-init.disabled exists: cloud-init will not run",
                fix="remove /etc/cloud/cloud-init.disabled",
                paths=("/etc/cloud/cloud-init.disabled",),
            )]
        config, broken = cloud_config(view)
        found = [self.finding(f"{path} is not valid YAML; cloud-init will ignore it",
                              severity=Severity.warning, paths=(path,), fixable=False)
                 for path in broken]
        sources = config.get("datasource_list")
        if isinstance(sources, list) and not OPENSTACK_SOURCES & {str(s) for s in sources}:
            found.append(self.finding(
                f"datasource_list {sources} has none of OpenStack, ConfigDrive, Ec2: "
                "cloud-init will not find kumo's metadata service or config drive",
            ))
        return found

    def edits(self, view: ImageView) -> list[Edit]:
        if not has_cloud_init(view):
            return []
        edits: list[Edit] = []
        config, _ = cloud_config(view)
        sources = config.get("datasource_list")
        if isinstance(sources, list) and not OPENSTACK_SOURCES & {str(s) for s in sources}:
            edits.append(WriteFile(DATASOURCES_FILE, DATASOURCES.encode()))
        return edits


class Growpart(Rule):
    id = "growpart"
    severity = Severity.warning
    title = "growpart grows the root partition at boot"
    fix = "install cloud-guest-utils (growpart) and keep cloud-init's growpart module on"

    def check(self, view: ImageView) -> list[Finding]:
        tool = next((p for p in GROWPART_BINS if view.is_file(p)), None)
        if has_cloud_init(view):
            config, _ = cloud_config(view)
            growpart = config.get("growpart")
            if isinstance(growpart, dict) and str(growpart.get("mode", "auto")).lower() in (
                "off", "false", "none"
            ):
                return [self.finding("cloud-init's growpart is switched off (mode: off): "
                                     "the root stays at the image's size on bigger flavors")]
            if tool or view.is_file(GROWROOT):
                return []
            return [self.finding("cloud-init is present but growpart is not installed: "
                                 "the root partition will not grow to the flavor's disk")]
        if tool or view.is_file(GROWROOT) or view.scripts_mentioning("growpart", "resize2fs"):
            return []
        return [self.finding("nothing grows the root partition at boot (no growpart, no "
                             "growroot, no resize script): the disk stays at the image's size")]
