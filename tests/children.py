"""Processes tests start die with the test run, even when it is killed.

`die_with_parent` is a `preexec_fn`: the kernel sends the child SIGTERM when the
process that started it ends (PR_SET_PDEATHSIG), so a test run stopped by a timeout or
Ctrl-C leaves no PostgreSQL, Swift or agent behind on a shared machine.
"""

from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
