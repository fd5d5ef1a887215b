"""Pieces for small initramfs-based guests: kernel modules, shared libraries, cpio.

No kmod, binutils or cpio on the build host is needed: the few ELF facts used here
(a module's `depends=`, a program's DT_NEEDED libraries) are read from the files,
and the initramfs is written as a gzip'd "newc" cpio stream.
"""

from __future__ import annotations

import gzip
import os
import stat
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from kumo.errors import NotFound

SHT_DYNAMIC = 6
DT_NEEDED = 1
LIBRARY_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib64", "lib", "usr/lib")


class ElfFile:
    """The section table of a 64-bit little-endian ELF file (kernels and programs here)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = path.read_bytes()
        if self.data[:4] != b"\x7fELF" or self.data[4] != 2 or self.data[5] != 1:
            raise ValueError(f"{path} is not a 64-bit little-endian ELF file")
        shoff, = struct.unpack_from("<Q", self.data, 0x28)
        shentsize, shnum, shstrndx = struct.unpack_from("<HHH", self.data, 0x3A)
        self.sections = [
            struct.unpack_from("<IIQQQQIIQQ", self.data, shoff + i * shentsize)
            for i in range(shnum)
        ]
        names = self.sections[shstrndx]
        self._names = self.data[names[4] : names[4] + names[5]]

    def section(self, name: str) -> bytes | None:
        for header in self.sections:
            end = self._names.index(b"\0", header[0])
            if self._names[header[0] : end].decode() == name:
                return self.data[header[4] : header[4] + header[5]]
        return None

    def needed(self) -> list[str]:
        """Shared libraries the program or library names (DT_NEEDED)."""
        found = []
        for header in self.sections:
            if header[1] != SHT_DYNAMIC:
                continue
            strings = self.sections[header[6]]
            table = self.data[strings[4] : strings[4] + strings[5]]
            for offset in range(header[4], header[4] + header[5], 16):
                tag, value = struct.unpack_from("<qQ", self.data, offset)
                if tag == DT_NEEDED:
                    found.append(table[value : table.index(b"\0", value)].decode())
        return found

    def interpreter(self) -> str | None:
        interp = self.section(".interp")
        return interp.rstrip(b"\0").decode() if interp else None

    def modinfo(self, key: str) -> list[str]:
        """Values of `key=` in a kernel module's .modinfo section."""
        info = self.section(".modinfo") or b""
        prefix = key.encode() + b"="
        return [item[len(prefix) :].decode() for item in info.split(b"\0")
                if item.startswith(prefix)]


def module_index(modules_dir: Path) -> dict[str, Path]:
    """Module name (dashes as underscores) -> .ko file under lib/modules/VERSION."""
    return {path.name[:-3].replace("-", "_"): path for path in modules_dir.rglob("*.ko")}


def builtin_modules(modules_dir: Path) -> set[str]:
    listing = modules_dir / "modules.builtin"
    if not listing.is_file():
        return set()
    return {Path(line.strip()).name[:-3].replace("-", "_")
            for line in listing.read_text().splitlines() if line.strip()}


def module_load_order(modules_dir: Path, wanted: Iterable[str]) -> list[Path]:
    """The .ko files for `wanted` and what they depend on, dependencies first.

    Modules built into the kernel are skipped; a name that is neither a module nor
    built in raises NotFound (the kernel package changed under us).
    """
    index = module_index(modules_dir)
    builtin = builtin_modules(modules_dir)
    order: list[Path] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        if name not in index:
            if name in builtin:
                return
            raise NotFound(f"kernel module {name} is neither built in nor in {modules_dir}")
        for dependency in ElfFile(index[name]).modinfo("depends"):
            for dep in filter(None, dependency.split(",")):
                visit(dep)
        order.append(index[name])

    for name in wanted:
        visit(name)
    return order


def library_closure(program: Path, roots: Iterable[Path]) -> dict[str, Path]:
    """The shared libraries (and dynamic loader) `program` needs, found under `roots`.

    Returns path-in-the-guest (as the loader looks it up, e.g.
    "lib/x86_64-linux-gnu/libz.so.1") -> the real file in an unpacked package.
    """
    roots = list(roots)
    found: dict[str, Path] = {}
    sonames: set[str] = set()
    pending = [program]
    while pending:
        elf = ElfFile(pending.pop())
        names = elf.needed()
        interp = elf.interpreter()
        if interp:
            names.append(interp)
        for name in names:
            if Path(name).name in sonames:
                continue
            sonames.add(Path(name).name)
            guest_path, real = _find_library(name, roots)
            found[guest_path] = real
            pending.append(real)
    return found


def resolve_in(root: Path, path: Path) -> Path:
    """Follow symlinks of `path` as if `root` were `/` (never into the host's files)."""
    for _ in range(40):
        if not path.is_symlink():
            return path
        target = os.readlink(path)
        path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
    raise NotFound(f"too many symlinks under {root} at {path}")


def _find_library(name: str, roots: list[Path]) -> tuple[str, Path]:
    for root in roots:
        if name.startswith("/"):
            candidates = [name.lstrip("/")]
        else:
            candidates = [f"{directory}/{name}" for directory in LIBRARY_DIRS]
        for candidate in candidates:
            if (root / candidate).is_symlink() or (root / candidate).exists():
                real = resolve_in(root, root / candidate)
                if real.is_file():
                    return candidate, real
    raise NotFound(f"shared library {name} is in none of the unpacked packages")


class NewcArchive:
    """A gzip'd cpio "newc" archive, as the Linux kernel unpacks an initramfs."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = gzip.GzipFile(fileobj=out, mode="wb", compresslevel=6, mtime=0)
        self.inode = 1

    def add_tree(self, root: Path) -> None:
        """Every file, folder and symlink under `root`, owned by root."""
        for directory, dirs, files in os.walk(root):
            dirs.sort()
            for name in sorted([*dirs, *files]):
                path = Path(directory) / name
                info = os.lstat(path)
                relative = str(path.relative_to(root))
                if stat.S_ISLNK(info.st_mode):
                    self.add(relative, info.st_mode, os.readlink(path).encode())
                elif stat.S_ISDIR(info.st_mode):
                    self.add(relative, info.st_mode, b"")
                else:
                    self.add(relative, info.st_mode, path.read_bytes())

    def add_device(self, name: str, mode: int, major: int, minor: int) -> None:
        self.add(name, mode, b"", rdev=(major, minor))

    def add(self, name: str, mode: int, data: bytes, rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self.inode, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1],
                  len(encoded), 0)
        self.inode += 1
        header = b"070701" + b"".join(b"%08X" % value for value in fields)
        self.out.write(header + encoded + _pad(len(header) + len(encoded)))
        self.out.write(data + _pad(len(data)))

    def close(self) -> None:
        self.add("TRAILER!!!", 0, b"")
        self.out.close()


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)
