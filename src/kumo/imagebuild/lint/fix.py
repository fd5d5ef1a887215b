"""`kumo image lint --fix -o OUT`: the safe fixes, applied to a copy with debugfs.

The input is never written. It is converted to a sparse raw file next to OUT, the
rules' edits are written into the root ext4 filesystem with `debugfs -w` (no
mount, no loop device), `e2fsck -fn` checks the result, and the copy is converted
back to the input's format and renamed to OUT.
"""

from __future__ import annotations

import os
import shlex
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kumo.diskformat import qemuimg
from kumo.errors import BadRequest, ToolError
from kumo.imagebuild.lint import RULES, check_view
from kumo.imagebuild.lint.base import Edit, Finding, MakeSymlink, RemoveFile
from kumo.imagebuild.lint.view import ImageView
from kumo.imagebuild.reader import Ext4, detect_format, open_source
from kumo.process import run

E2FSPROGS = "e2fsprogs"
SAFE_NAME = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-+@:/")


@dataclass(frozen=True)
class FixResult:
    output: Path
    applied: list[tuple[str, Edit]]  # (rule id, edit)
    before: list[Finding]
    after: list[Finding]


def fix_image(image: Path, out: Path, fmt: str | None = None) -> FixResult:
    """Write a fixed copy of `image` to `out` (same format); the input is not touched."""
    image, out = Path(image), Path(out)
    fmt = fmt or detect_format(image)
    if out.exists() and out.resolve() == image.resolve():
        raise BadRequest("--fix writes a copy: -o must name another file than the input")
    with open_source(image, fmt) as source:
        view = ImageView(source)
        before = check_view(view)
        if view.root_partition is None:
            raise BadRequest("no ext2/3/4 root filesystem: nothing can be fixed")
        offset = view.root_partition.start
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".kumo-fix-", dir=out.parent) as scratch:
        raw = Path(scratch) / "disk.raw"
        qemuimg.convert(image, fmt, raw, "raw")
        with open_source(raw, "raw") as source:
            view = ImageView(source)
            applied = [(rule.id, edit) for rule in RULES.values()
                       if view.root is not None for edit in rule.edits(view)]
            script = _debugfs_script(view.fs, [e for _, e in applied], Path(scratch))
        if applied:
            _debugfs(raw, offset, script)
            run("e2fsck", ["-f", "-n", f"{raw}?offset={offset}"], package=E2FSPROGS)
        with open_source(raw, "raw") as source:
            after = check_view(ImageView(source))
        temp = Path(scratch) / "out"
        if fmt == "raw":
            os.replace(raw, temp)
        else:
            qemuimg.convert(raw, "raw", temp, fmt)
        os.replace(temp, out)
    return FixResult(out, applied, before, after)


def _quote(path: str) -> str:
    if not path or not set(path) <= SAFE_NAME:
        raise BadRequest(f"cannot fix {path!r} automatically: unusual characters in the name")
    return path


def _debugfs_script(fs: Ext4, edits: list[Edit], scratch: Path) -> str:
    lines: list[str] = []
    made: set[str] = set()
    for number, edit in enumerate(edits):
        parent, _, name = edit.path.rpartition("/")
        directory = _ensure_dir(fs, parent or "/", lines, made)
        target = f"{directory.rstrip('/')}/{name}"
        existing = fs.lookup(target, follow=False)
        if isinstance(edit, RemoveFile):
            if existing is not None:
                lines.append(f"rm {_quote(target)}")
            continue
        if existing is not None:
            lines.append(f"rm {_quote(target)}")
        if isinstance(edit, MakeSymlink):
            lines.append(f"symlink {_quote(target)} {_quote(edit.target)}")
            continue
        local = scratch / f"edit-{number}"
        local.write_bytes(edit.data)
        keep = existing is not None and existing.is_file
        mode = existing.mode & 0o7777 if keep and existing else edit.mode
        uid, gid = (existing.uid, existing.gid) if keep and existing else (0, 0)
        lines += [f"cd {_quote(directory)}", f"write {local} {_quote(name)}", "cd /",
                  f"sif {target} mode 0{0o100000 | mode:o}", f"sif {target} uid {uid}",
                  f"sif {target} gid {gid}"]
    return "\n".join(lines) + "\n"


def _ensure_dir(fs: Ext4, path: str, lines: list[str], made: set[str]) -> str:
    """The canonical path of directory `path`, with debugfs mkdir lines for missing parts."""
    real = fs.realpath(path)
    if real is not None:
        return real
    parent, _, name = path.rstrip("/").rpartition("/")
    base = _ensure_dir(fs, parent or "/", lines, made)
    created = f"{base.rstrip('/')}/{name}"
    if created not in made:
        lines.append(f"mkdir {_quote(created)}")
        made.add(created)
    return created


def _debugfs(raw: Path, offset: int, script: str) -> None:
    commands = Path(raw.parent / "debugfs.cmds")
    commands.write_text(script)
    result = run("debugfs", ["-w", "-f", commands, f"{raw}?offset={offset}"], package=E2FSPROGS)
    # debugfs exits 0 even when a command fails; its complaints go to stderr.
    problems = [line for line in result.stderr.decode("utf-8", "replace").splitlines()
                if line.strip() and not line.startswith("debugfs ")]
    if problems:
        raise ToolError("debugfs", "; ".join(problems[:5]) + f" (script: {shlex.quote(script)})")
