"""No MAC address baked into the image (persistent net rules, HWADDR)."""

from __future__ import annotations

import re

from kumo.imagebuild.lint.base import Edit, Finding, Rule, Severity, WriteFile
from kumo.imagebuild.lint.view import ImageView

PERSISTENT_RULES = "/etc/udev/rules.d/70-persistent-net.rules"
GENERATOR = "75-persistent-net-generator.rules"
GENERATOR_OVERRIDE = f"/etc/udev/rules.d/{GENERATOR}"
HWADDR = re.compile(r"^\s*HWADDR\s*=", re.M)
IFCFG_DIRS = ("/etc/sysconfig/network-scripts", "/etc/sysconfig/network")


def _has_rules(text: str | None) -> bool:
    return text is not None and any(
        line.strip() and not line.lstrip().startswith("#") for line in text.splitlines()
    )


class PersistentNetRules(Rule):
    id = "persistent-net-rules"
    severity = Severity.error
    title = "70-persistent-net.rules is empty"
    fix = f"replace {PERSISTENT_RULES} with an empty file"

    def check(self, view: ImageView) -> list[Finding]:
        if not _has_rules(view.text(PERSISTENT_RULES)):
            return []
        return [self.finding(
            f"{PERSISTENT_RULES} pins interface names to the MAC addresses of the machine "
            "the image was made on: an instance's NIC (a new MAC) will not be eth0",
            paths=(PERSISTENT_RULES,),
        )]

    def edits(self, view: ImageView) -> list[Edit]:
        return [WriteFile(PERSISTENT_RULES, b"")] if self.check(view) else []


class PersistentNetGenerator(Rule):
    id = "persistent-net-generator"
    severity = Severity.error
    title = "75-persistent-net-generator.rules is not active"
    fix = f"override it with an empty {GENERATOR_OVERRIDE}"

    def check(self, view: ImageView) -> list[Finding]:
        override = view.fs.lookup(GENERATOR_OVERRIDE, follow=False)
        if override is not None and (
            view.fs.readlink(GENERATOR_OVERRIDE) == "/dev/null"
            or not _has_rules(view.text(GENERATOR_OVERRIDE))
        ):
            return []
        active = [path for path in (f"/lib/udev/rules.d/{GENERATOR}",
                                    f"/usr/lib/udev/rules.d/{GENERATOR}", GENERATOR_OVERRIDE)
                  if _has_rules(view.text(path))]
        if not active:
            return []
        return [self.finding(
            f"{active[0]} writes 70-persistent-net.rules at first boot, pinning the MAC "
            "address of the first instance into every later one",
            paths=(active[0],),
        )]

    def edits(self, view: ImageView) -> list[Edit]:
        return [WriteFile(GENERATOR_OVERRIDE, b"")] if self.check(view) else []


class IfcfgHwaddr(Rule):
    id = "ifcfg-hwaddr"
    severity = Severity.error
    title = "no HWADDR in ifcfg-* files"
    fix = "delete the HWADDR= lines from the ifcfg-* files"

    def _files(self, view: ImageView) -> dict[str, str]:
        found = {}
        for directory in IFCFG_DIRS:
            for path in view.glob(directory, "ifcfg-*"):
                text = view.text(path)
                if text is not None and HWADDR.search(text):
                    found[path] = text
        return found

    def check(self, view: ImageView) -> list[Finding]:
        files = self._files(view)
        if not files:
            return []
        return [self.finding(
            f"HWADDR= in {', '.join(files)} ties the interface to one MAC address: "
            "instances get another one and lose their network",
            paths=tuple(files),
        )]

    def edits(self, view: ImageView) -> list[Edit]:
        return [
            WriteFile(path, "".join(line for line in text.splitlines(keepends=True)
                                    if not HWADDR.match(line)).encode())
            for path, text in self._files(view).items()
        ]
