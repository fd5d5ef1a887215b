"""Run an external program: arguments as a list, stderr turned into a clear error."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from kumo.errors import ToolError, ToolMissing

STDERR_LIMIT = 2000


def require(program: str, package: str) -> str:
    """The full path of `program`, or ToolMissing naming the Debian package to install."""
    found = shutil.which(program) or shutil.which(program, path="/usr/sbin:/sbin")
    if found is None:
        raise ToolMissing(program, package)
    return found


def run(
    program: str,
    args: Sequence[str | Path],
    *,
    package: str,
    input: bytes | None = None,
    timeout: float | None = 600,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    ok_codes: tuple[int, ...] = (0,),
) -> subprocess.CompletedProcess[bytes]:
    """Run `program args...`; an exit status not in `ok_codes` raises ToolError with stderr."""
    path = require(program, package)
    try:
        result = subprocess.run(
            [path, *map(str, args)],
            input=input,
            capture_output=True,
            timeout=timeout,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise ToolError(program, f"did not finish within {timeout:.0f} s") from None
    if result.returncode not in ok_codes:
        raise ToolError(program, describe_failure(result.returncode, result.stderr))
    return result


def describe_failure(returncode: int, stderr: bytes) -> str:
    text = stderr.decode("utf-8", "replace").strip()
    if len(text) > STDERR_LIMIT:
        text = "…" + text[-STDERR_LIMIT:]
    return f"exited with status {returncode}: {text or '(no error output)'}"
