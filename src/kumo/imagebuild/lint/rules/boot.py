"""Booting on a cloud: the kernel log on ttyS0, virtio drivers for the disk and NIC."""

from __future__ import annotations

import re

from kumo.imagebuild.lint.base import Edit, Finding, Rule, Severity, WriteFile
from kumo.imagebuild.lint.view import EXTLINUX_CFGS, GRUB_CFGS, ImageView

CONSOLE = "console=tty0 console=ttyS0,115200n8"
SERIAL = re.compile(r"console=ttyS0\b")
DEFAULT_GRUB = "/etc/default/grub"
GRUB_CMDLINE = re.compile(r'^(\s*GRUB_CMDLINE_LINUX(?:_DEFAULT)?\s*=\s*)(["\']?)(.*?)\2\s*$', re.M)
GRUB_KERNEL = re.compile(r"^\s*(linux|linux16|linuxefi)\s", re.I)
EXTLINUX_APPEND = re.compile(r"^\s*append\s", re.I)
EXTLINUX_KERNEL = re.compile(r"^\s*(kernel|linux)\s", re.I)


def _missing_lines(text: str, kernel_line: re.Pattern[str]) -> list[str]:
    return [line for line in text.splitlines() if kernel_line.match(line)
            and not SERIAL.search(line)]


def _extlinux_missing(text: str) -> bool:
    """A label without console=ttyS0 on its APPEND line (or without an APPEND line)."""
    labels: list[tuple[bool, bool]] = []  # (has kernel, has serial append)
    for line in text.splitlines():
        if re.match(r"^\s*label\s", line, re.I):
            labels.append((False, False))
        elif labels and EXTLINUX_KERNEL.match(line):
            labels[-1] = (True, labels[-1][1])
        elif labels and EXTLINUX_APPEND.match(line):
            labels[-1] = (labels[-1][0], bool(SERIAL.search(line)))
    return any(kernel and not serial for kernel, serial in labels)


def _add_to_extlinux(text: str) -> str:
    out, label_open, appended = [], False, False
    for line in [*text.splitlines(), "label"]:  # a sentinel closes the last label
        if re.match(r"^\s*label\s*", line, re.I):
            if label_open and not appended:
                out.append(f"  APPEND {CONSOLE}")
            label_open, appended = True, False
        elif EXTLINUX_APPEND.match(line):
            appended = True
            if not SERIAL.search(line):
                line = f"{line.rstrip()} {CONSOLE}"
        out.append(line)
    return "\n".join(out[:-1]) + "\n"


class SerialConsole(Rule):
    id = "serial-console"
    severity = Severity.error
    title = "the kernel logs to ttyS0"
    fix = (f'add "{CONSOLE}" to the kernel command line (GRUB_CMDLINE_LINUX_DEFAULT in '
           "/etc/default/grub, then update-grub; or APPEND in extlinux.conf)")

    def check(self, view: ImageView) -> list[Finding]:
        configs = view.boot_configs
        loaders = [p for p in configs if p in GRUB_CFGS or p in EXTLINUX_CFGS]
        if not loaders:
            return [self.finding("no boot configuration found (/boot/grub/grub.cfg, "
                                 "extlinux.conf): the console cannot be checked and the disk "
                                 "may not boot by itself", fixable=False)]
        bad = [p for p in loaders if (
            _missing_lines(configs[p], GRUB_KERNEL) if p in GRUB_CFGS
            else _extlinux_missing(configs[p]))]
        found = []
        if bad:
            found.append(self.finding(
                f"console=ttyS0 is missing from {', '.join(bad)}: the boot log will not "
                "reach the serial console (`openstack console log show` stays empty)",
                paths=tuple(bad),
            ))
        default = configs.get(DEFAULT_GRUB)
        if default is not None and not any(
            SERIAL.search(m.group(3)) for m in GRUB_CMDLINE.finditer(default)
        ):
            found.append(self.finding(
                f"{DEFAULT_GRUB} has no console=ttyS0: the next update-grub in the "
                "instance drops the serial console", severity=Severity.warning,
                paths=(DEFAULT_GRUB,),
            ))
        return found

    def edits(self, view: ImageView) -> list[Edit]:
        edits: list[Edit] = []
        for path, text in view.boot_configs.items():
            if path in GRUB_CFGS and _missing_lines(text, GRUB_KERNEL):
                lines = [f"{line.rstrip()} {CONSOLE}" if GRUB_KERNEL.match(line)
                         and not SERIAL.search(line) else line for line in text.splitlines()]
                edits.append(WriteFile(path, ("\n".join(lines) + "\n").encode()))
            elif path in EXTLINUX_CFGS and _extlinux_missing(text):
                edits.append(WriteFile(path, _add_to_extlinux(text).encode()))
            elif path == DEFAULT_GRUB and not any(
                SERIAL.search(m.group(3)) for m in GRUB_CMDLINE.finditer(text)
            ):
                edits.append(WriteFile(path, _add_to_default_grub(text).encode()))
        return edits


def _add_to_default_grub(text: str) -> str:
    pattern = re.compile(r'^(\s*GRUB_CMDLINE_LINUX_DEFAULT\s*=\s*)(["\']?)(.*?)\2\s*$', re.M)
    if pattern.search(text):
        return pattern.sub(
            lambda m: f'{m.group(1)}"{(m.group(3) + " " + CONSOLE).strip()}"', text, count=1
        )
    return text.rstrip("\n") + f'\nGRUB_CMDLINE_LINUX_DEFAULT="{CONSOLE}"\n'


class VirtioDrivers(Rule):
    id = "virtio-drivers"
    severity = Severity.error
    title = "virtio drivers in the kernel or initramfs"
    fix = ("build virtio_blk and virtio_pci into the kernel, or add them to the initramfs "
           "(echo virtio_blk >> /etc/initramfs-tools/modules; update-initramfs -u)")

    def check(self, view: ImageView) -> list[Finding]:
        kernels = view.kernels
        if not kernels:
            return [self.finding("no kernel found in /boot (or named by the boot "
                                 "configuration): virtio support cannot be checked")]
        found = []
        for kernel in kernels:
            builtin = (view.builtin_modules(kernel.version) if kernel.version else None) or set()
            initrd = kernel.initrd

            def early(module: str, builtin: set[str] = builtin,
                      initrd: str | None = initrd) -> bool:
                if module in builtin:
                    return True
                image = view.initramfs(initrd) if initrd else None  # read only when needed
                return bool(image and image.has_module(module))

            missing = [m for m in ("virtio_blk", "virtio_pci") if not early(m)]
            if missing:
                where = f"{kernel.path} and {kernel.initrd}" if kernel.initrd else kernel.path
                found.append(self.finding(
                    f"{' and '.join(missing)} neither built into nor loaded early by "
                    f"{where}: the instance cannot find its root disk (vda)",
                    paths=(kernel.path,),
                ))
            elif not early("virtio_net") and not (
                kernel.version and view.module_installed(kernel.version, "virtio_net")
            ):
                found.append(self.finding(
                    f"no virtio_net for {kernel.path}: the instance will have no network",
                    paths=(kernel.path,),
                ))
        return found
