"""One running kumo per data directory.

`kumo up` and `kumo agent` run the guests, networks and volumes of their data
directory. Two of them on one directory would both start its guests and both rebuild
its network namespace, so each holds an fcntl lock on `DATA/kumo.pid` (which has its
pid) for as long as it runs; the kernel drops the lock when the process ends, however
it ends, so a crash never leaves a stale lock behind. `kumo network cleanup` holds the
same lock while it tears the namespace down. `kumo api` is stateless and takes none.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

LOCK_FILE = "kumo.pid"


class DataDirError(Exception):
    """The data directory cannot be locked; the message says why, for the user."""


class DataDirInUse(DataDirError):
    def __init__(self, data_dir: Path, pid: int | None) -> None:
        self.data_dir = data_dir
        self.pid = pid
        who = f"kumo (pid {pid})" if pid else "kumo"
        super().__init__(f"another {who} runs with data directory {data_dir}; stop it first, "
                         "or use another --data-dir")


def hold(data_dir: Path) -> IO[str]:
    """Lock `data_dir` for this process (until the returned file is closed), or raise
    DataDirInUse naming the process that holds it, DataDirError if the folder is
    unusable."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        handle = (data_dir / LOCK_FILE).open("a+")
    except OSError as exc:
        raise DataDirError(f"cannot use data directory {data_dir}: {exc.strerror}") from None
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        pid = _pid(handle.read())
        handle.close()
        raise DataDirInUse(data_dir, pid) from None
    handle.truncate(0)
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


@contextlib.contextmanager
def held(data_dir: Path) -> Iterator[None]:
    """Hold `data_dir`'s lock for the `with` block (no folder: nothing runs there)."""
    if not data_dir.is_dir():
        yield
        return
    handle = hold(data_dir)
    try:
        yield
    finally:
        handle.close()


def _pid(text: str) -> int | None:
    return int(text) if text.strip().isdigit() else None
