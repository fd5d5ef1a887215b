"""Programs kumo starts in its namespace that run on their own (dnsmasq, apt-cacher-ng,
pasta): each is known by its pid file, checked against /proc so a reused pid is never
taken for ours, and stopped by that pid only."""

from __future__ import annotations

import contextlib
import os
import signal
import time
from pathlib import Path

from kumo.errors import ToolError


class Daemon:
    """A daemon by its pid file; `markers` must all appear in its command line."""

    def __init__(self, program: str, pid_file: Path, *markers: str) -> None:
        self.program = program
        self.pid_file = pid_file
        self.markers = [program.encode(), *(m.encode() for m in markers)]

    def pid(self) -> int | None:
        """Its pid while it runs, else None."""
        try:
            pid = int(self.pid_file.read_text().strip())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        except (OSError, ValueError):
            return None
        return pid if all(m in cmdline for m in self.markers) else None

    def wait_started(self, hint: str, timeout: float = 10.0) -> int:
        """Its pid once the pid file names it; ToolError with `hint` if it never does."""
        deadline = time.monotonic() + timeout
        while (pid := self.pid()) is None:
            if time.monotonic() > deadline:
                raise ToolError(self.program, f"did not start; {hint}")
            time.sleep(0.02)
        return pid

    def signal(self, signum: int) -> None:
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, and wait (up to `timeout`) until it is gone."""
        pid = self.pid()
        if pid is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
