"""kumo's own network namespace: where every bridge, tap, dnsmasq and nftables table lives.

The namespace is made with `ip netns add`, so it has a name under /run/netns that
`ip -n`, `ip netns exec` and `nsenter --net=` all understand, and it outlives `kumo
up` (guests keep their network while kumo restarts). kumo enters it in three ways:
- `ip -n NS ...` for links, addresses and routes;
- `exec_argv()` in front of a program that must run inside (dnsmasq, nft, QEMU);
- `call()` runs a Python function on a thread that has entered the namespace, to make
  sockets that live there (the metadata listeners) while kumo itself stays outside.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from kumo.errors import ToolError, ToolMissing
from kumo.process import require, run

T = TypeVar("T")
NETNS_DIR = Path("/run/netns")
CLONE_NEWNET = 0x40000000
IPROUTE2 = "iproute2"


def namespace_name(data_dir: Path) -> str:
    """`kumo-<8 hex>`: one namespace per data directory, stable across restarts."""
    digest = hashlib.sha256(str(Path(data_dir).resolve()).encode()).hexdigest()[:8]
    return f"kumo-{digest}"


class Namespace:
    """A named network namespace and the ways into it."""

    def __init__(self, name: str) -> None:
        self.name = name

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    def exists(self) -> bool:
        return self.path.exists()

    def create(self) -> None:
        """Create it (idempotent) with its loopback up."""
        if not self.exists():
            run("ip", ["netns", "add", self.name], package=IPROUTE2)
        self.ip("link", "set", "lo", "up")

    def delete(self) -> None:
        if self.exists():
            run("ip", ["netns", "delete", self.name], package=IPROUTE2)

    def ip(self, *args: str, check: bool = True) -> str:
        """`ip -n NS args...`; its output (stderr turned into ToolError when `check`)."""
        try:
            return run("ip", ["-n", self.name, *args], package=IPROUTE2).stdout.decode()
        except ToolError:
            if check:
                raise
            return ""

    def ip_json(self, *args: str) -> list[dict[str, Any]]:
        """`ip -j -n NS args...` parsed."""
        text = run("ip", ["-j", "-n", self.name, *args], package=IPROUTE2).stdout.decode()
        loaded = json.loads(text) if text.strip() else []
        return loaded if isinstance(loaded, list) else []

    def exec_argv(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace with nsenter (it execs: the pid is the program's)."""
        nsenter = require("nsenter", "util-linux")
        return [nsenter, f"--net={self.path}", "--", *argv]

    def run(self, program: str, args: Sequence[str | Path], *, package: str,
            input: bytes | None = None, timeout: float = 60) -> str:
        """Run `program` inside the namespace and return its stdout."""
        path = require(program, package)
        result = run("nsenter", [f"--net={self.path}", "--", path, *map(str, args)],
                     package="util-linux", input=input, timeout=timeout)
        return result.stdout.decode()

    def sysctl(self, key: str, value: str) -> None:
        """Set a per-namespace sysctl (net.*) by writing /proc/sys from inside."""
        proc = "/proc/sys/" + key.replace(".", "/")
        self.call(lambda: Path(proc).write_text(value))

    def call(self, func: Callable[[], T]) -> T:
        """Run `func` on a thread that has entered the namespace; return its result.

        setns() changes only the calling thread, so kumo's other threads and the
        event loop stay in the host's namespace. Sockets made by `func` keep living
        in this namespace wherever they are used afterwards.
        """
        result: list[T] = []
        failure: list[BaseException] = []

        def enter_and_call() -> None:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    if _setns(fd, CLONE_NEWNET) != 0:
                        err = ctypes.get_errno()
                        raise OSError(err, f"cannot enter network namespace {self.name}: "
                                           f"{os.strerror(err)}")
                finally:
                    os.close(fd)
                result.append(func())
            except BaseException as exc:  # handed to the caller's thread
                failure.append(exc)

        thread = threading.Thread(target=enter_and_call, name=f"netns-{self.name}")
        thread.start()
        thread.join()
        if failure:
            raise failure[0]
        return result[0]


def _setns(fd: int, nstype: int) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.setns(fd, nstype))


def can_create_namespaces() -> str | None:
    """None when this process may build namespaces; otherwise why not, for one log line."""
    if os.geteuid() != 0:
        return "kumo is not running as root"
    for program, package in (("ip", IPROUTE2), ("nsenter", "util-linux")):
        try:
            require(program, package)
        except ToolMissing as exc:
            return exc.message
    return None
