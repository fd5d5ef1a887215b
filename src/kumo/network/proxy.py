"""The guests' package proxy: apt-cacher-ng inside kumo's namespace (seed 004).

Many guests installing the same packages download each once: apt-cacher-ng keeps
what it fetched under `DATA/package-cache` and serves it again. It fetches only
from the mirrors kumo allows (`ForceManaged`: every other URL is refused), by
default the host's own apt sources, at most at `package_proxy_max_rate` KiB/s
(its `MaxDlSpeed`, seed 004's bandwidth limit). It listens on the namespace's
addresses; nftables lets a guest reach it only at its own network's DHCP address,
and cloud-init is pointed there through vendor data (`apt: proxy:`). Its own
downloads leave the namespace through pasta (see `uplink`).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path
from urllib.parse import urlsplit

from kumo.errors import ToolError
from kumo.network.daemons import Daemon
from kumo.network.netns import Namespace
from kumo.process import require

log = logging.getLogger("kumo.network")

PROGRAM = "apt-cacher-ng"
PACKAGE = "apt-cacher-ng"
SOURCES = (Path("/etc/apt/sources.list"), Path("/etc/apt/sources.list.d"))


def host_mirrors(sources: tuple[Path, ...] = SOURCES) -> list[str]:
    """The http:// repositories in the host's apt sources (one-line and deb822 forms)."""
    files: list[Path] = []
    for entry in sources:
        if entry.is_dir():
            files += sorted(p for p in entry.iterdir() if p.suffix in (".list", ".sources"))
        elif entry.is_file():
            files.append(entry)
    found: list[str] = []
    for path in files:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            urls = [u for m in re.finditer(r"(?im)^URIs:\s*(.+)$", text) for u in m[1].split()]
        else:
            urls = [m[1] for m in re.finditer(
                r"(?m)^\s*deb(?:-src)?\s+(?:\[[^\]]*\]\s+)?(\S+)", text)]
        for url in urls:
            if url.startswith("http://") and url.rstrip("/") not in found:
                found.append(url.rstrip("/"))
    return found


def render_conf(*, cache_dir: Path, folder: Path, port: int, max_rate: int,
                mirrors: list[str]) -> str:
    lines = [
        f"CacheDir: {cache_dir}",
        f"LogDir: {folder / 'log'}",
        f"PidFile: {folder / 'pid'}",
        f"SocketPath: {folder / 'socket'}",
        f"Port: {port}",
        "BindAddress: 0.0.0.0",
        "ForeGround: 0",
        "VerboseLog: 1",
        "ExThreshold: 4",
        # Only the mirrors below: no CONNECT tunnels, no other hosts.
        "ForceManaged: 1",
        "PassThroughPattern: ^$",
        "DontCache: ^$",
        "Debug: 0",
    ]
    if max_rate:
        lines.append(f"MaxDlSpeed: {max_rate}")
    for index, url in enumerate(mirrors):
        parts = urlsplit(url)
        prefix = parts.netloc + parts.path.rstrip("/")
        lines.append(f"Remap-kumo{index}: {prefix} ; {url.rstrip('/')}")
    return "\n".join(lines) + "\n"


class PackageProxy:
    """apt-cacher-ng for one kumo: its files, its process."""

    def __init__(self, ns: Namespace, run_dir: Path, cache_dir: Path) -> None:
        self.ns = ns
        self.folder = run_dir / "proxy"
        self.cache_dir = cache_dir
        self.daemon = Daemon(PROGRAM, self.folder / "pid", str(self.folder))

    @property
    def log_file(self) -> Path:
        """apt-cacher-ng's transfer log: one line per request, hits and misses told apart."""
        return self.folder / "log" / "apt-cacher.log"

    def pid(self) -> int | None:
        return self.daemon.pid()

    def ensure(self, *, port: int, max_rate: int, mirrors: list[str]) -> None:
        """Write its configuration and (re)start it when that changed or it is not running."""
        conf_dir = self.folder / "conf"
        for folder in (conf_dir, self.folder / "log", self.cache_dir):
            folder.mkdir(parents=True, exist_ok=True)
        text = render_conf(cache_dir=self.cache_dir, folder=self.folder, port=port,
                           max_rate=max_rate, mirrors=mirrors)
        conf = conf_dir / "acng.conf"
        changed = not conf.exists() or conf.read_text() != text
        if changed:
            conf.write_text(text)
        if self.pid() is not None and not changed:
            return
        self.stop()
        binary = require(PROGRAM, PACKAGE)
        try:
            self.ns.run(binary, ["-c", str(conf_dir), f"PidFile={self.folder / 'pid'}"],
                        package=PACKAGE, timeout=30)
        except ToolError as exc:
            raise ToolError(PROGRAM, f"the package proxy did not start: {exc.message}") from None
        self.daemon.wait_started(f"see {self.folder}/log")
        log.info("network: package proxy apt-cacher-ng on port %s (pid %s), mirrors: %s%s",
                 port, self.pid(), ", ".join(mirrors) or "none",
                 f", limited to {max_rate} KiB/s" if max_rate else "")

    def stop(self) -> None:
        self.daemon.stop()
