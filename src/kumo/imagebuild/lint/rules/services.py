"""Services at boot: an SSH server must start, a firewall must not."""

from __future__ import annotations

import re

from kumo.imagebuild.lint.base import (
    Edit,
    Finding,
    MakeSymlink,
    RemoveFile,
    Rule,
    Severity,
    WriteFile,
)
from kumo.imagebuild.lint.view import ImageView

SSH_SERVERS = {  # binary -> systemd units that start it
    "sshd": ("ssh.service", "sshd.service", "ssh.socket", "sshd.socket"),
    "dropbear": ("dropbear.service",),
}
BIN_DIRS = ("/usr/sbin", "/sbin", "/usr/bin", "/bin", "/usr/local/sbin")
FIREWALL_UNITS = ("firewalld.service", "iptables.service", "ip6tables.service",
                  "nftables.service", "netfilter-persistent.service", "shorewall.service",
                  "ufw.service")
UFW_CONF = "/etc/ufw/ufw.conf"
UFW_ENABLED = re.compile(r"^\s*ENABLED\s*=\s*\"?yes\"?\s*$", re.M | re.I)
WANTS = "/etc/systemd/system/multi-user.target.wants"


class SshServer(Rule):
    id = "ssh-server"
    severity = Severity.error
    title = "an SSH server starts at boot"
    fix = "install openssh-server (or dropbear) and enable it: systemctl enable ssh"

    def _installed(self, view: ImageView) -> list[str]:
        found = [f"{d}/{name}" for name in SSH_SERVERS for d in BIN_DIRS
                 if view.is_file(f"{d}/{name}")]
        if found:
            return found
        for kernel in view.kernels:  # a guest that runs from its initramfs
            image = view.initramfs(kernel.initrd) if kernel.initrd else None
            found += [f"initrd:/{n}" for n in sorted(image.names if image else ())
                      if n.rsplit("/", 1)[-1] in SSH_SERVERS]
        return found

    def _started(self, view: ImageView) -> list[str]:
        started = [link for units in SSH_SERVERS.values() for unit in units
                   for link in view.unit_links(unit)]
        started += [link for name in ("ssh", "sshd", "dropbear") for link in view.sysv_links(name)]
        if not view.has_systemd:
            started += view.scripts_mentioning("dropbear", "sshd")
        return started

    def check(self, view: ImageView) -> list[Finding]:
        installed = self._installed(view)
        if not installed:
            return [self.finding("no SSH server (sshd or dropbear) in the image: users "
                                 "cannot log in to instances", fixable=False)]
        if self._started(view):
            return []
        return [self.finding(f"{installed[0]} is installed but nothing starts it at boot",
                             paths=tuple(installed), fixable=bool(self.edits(view)))]

    def edits(self, view: ImageView) -> list[Edit]:
        if not view.has_systemd or not self._installed(view) or self._started(view):
            return []
        for units in SSH_SERVERS.values():
            for unit in units:
                path = view.unit_file(unit)
                if path is None or unit.endswith(".socket"):
                    continue
                edits: list[Edit] = []
                if view.unit_masked(unit):
                    edits.append(RemoveFile(f"/etc/systemd/system/{unit}"))
                return [*edits, MakeSymlink(f"{WANTS}/{unit}", path)]
        return []


class Firewall(Rule):
    id = "firewall"
    severity = Severity.error
    title = "no firewall enabled at boot"
    fix = ("disable the guest firewall (systemctl disable firewalld/ufw/nftables/iptables); "
           "security groups filter traffic outside the instance")

    def _ufw_on(self, view: ImageView) -> bool:
        return bool(UFW_ENABLED.search(view.text(UFW_CONF) or ""))

    def _links(self, view: ImageView) -> list[str]:
        links = []
        for unit in FIREWALL_UNITS:
            if unit == "ufw.service" and not self._ufw_on(view):
                continue
            links += view.unit_links(unit)
        for name in ("firewalld", "iptables", "ip6tables", "nftables", "netfilter-persistent",
                     "shorewall"):
            links += view.sysv_links(name)
            links += [p for level in ("boot", "default") for p in
                      view.glob(f"/etc/runlevels/{level}", name)]
        if self._ufw_on(view):
            links += view.sysv_links("ufw")
        return links

    def check(self, view: ImageView) -> list[Finding]:
        links = self._links(view)
        if not links:
            return []
        names = sorted({link.rsplit("/", 1)[-1] for link in links})
        return [self.finding(
            f"a firewall starts at boot ({', '.join(names)}): it can block SSH and the "
            "ports security groups open, and makes network problems hard to find",
            paths=tuple(links),
        )]

    def edits(self, view: ImageView) -> list[Edit]:
        edits: list[Edit] = []
        for link in self._links(view):
            if link.startswith("/etc/"):
                edits.append(RemoveFile(link))
            else:  # a vendor link under /usr: mask the unit instead
                edits.append(MakeSymlink(f"/etc/systemd/system/{link.rsplit('/', 1)[-1]}",
                                         "/dev/null"))
        text = view.text(UFW_CONF)
        if text is not None and self._ufw_on(view):
            edits.append(WriteFile(UFW_CONF, UFW_ENABLED.sub("ENABLED=no", text).encode()))
        return edits
