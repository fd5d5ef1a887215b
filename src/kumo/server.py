"""`kumo up`: every API, the compute agent and the metadata service in one process."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import uvicorn
import yaml

from kumo.config import Settings, load_settings
from kumo.db.engine import session_scope
from kumo.runtime import Runtime, build_runtime

log = logging.getLogger("kumo")


def admin_password(settings: Settings) -> str:
    """The configured admin password, or one generated on first start and kept (0600)."""
    if settings.admin_password:
        return settings.admin_password
    from kumo.identity.bootstrap import generate_password

    path = settings.data_dir / "admin-password"
    if path.exists():
        return path.read_text().strip()
    password = generate_password()
    write_private(path, password + "\n")
    return password


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable by the owner only, atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.replace(tmp, path)


def cloud_entry(settings: Settings, password: str) -> dict[str, Any]:
    return {
        "auth": {
            "auth_url": f"{settings.base_url}/identity/v3",
            "username": "admin",
            "password": password,
            "project_name": "admin",
            "user_domain_name": "Default",
            "project_domain_name": "Default",
        },
        "region_name": settings.region,
        "identity_api_version": 3,
        "interface": "public",
    }


def write_clouds_yaml(path: Path, entry: dict[str, Any]) -> None:
    """Set the `kumo` cloud in a clouds.yaml, keeping every other cloud in it."""
    document: dict[str, Any] = {}
    if path.exists():
        loaded = yaml.safe_load(path.read_text()) or {}
        if isinstance(loaded, dict):
            document = loaded
    clouds = document.setdefault("clouds", {})
    clouds["kumo"] = entry
    write_private(path, yaml.safe_dump(document, sort_keys=False))


def prepare(settings: Settings) -> tuple[Runtime, str]:
    """Build the runtime, recover from a crash, make sure the admin exists."""
    from kumo.identity.bootstrap import bootstrap
    from kumo.image.recovery import recover

    runtime = build_runtime(settings)
    password = admin_password(settings)
    with session_scope(runtime.sessions) as session:
        bootstrap(session, password)
    recover(runtime)
    return runtime, password


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise SystemExit(f"kumo: cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def serve(
    *,
    data_dir: Path | None,
    host: str | None,
    port: int | None,
    config_file: Path | None,
    merge_user_clouds: bool,
) -> None:
    from kumo.api.app import create_app
    from kumo.config import ConfigError

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(data_dir, config_file)
    except ConfigError as exc:
        raise SystemExit(f"kumo: {exc}") from None
    settings.host = host or settings.host
    settings.port = settings.port if port is None else port
    sock = bind(settings.host, settings.port)
    settings.port = sock.getsockname()[1]
    runtime, password = prepare(settings)
    app = create_app(runtime)
    app.router.lifespan_context = lambda _app: lifespan(runtime, password, merge_user_clouds)
    config = uvicorn.Config(
        app, http="httptools", loop="uvloop", log_level="warning", access_log=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    asyncio.run(server.serve(sockets=[sock]))


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime, password: str, merge: bool) -> AsyncIterator[None]:
    settings = runtime.settings
    for name, service in runtime.services.items():
        log.info("starting %s", name)
        await service.start()
    clouds = settings.data_dir / "clouds.yaml"
    entry = cloud_entry(settings, password)
    write_clouds_yaml(clouds, entry)
    if merge:
        write_clouds_yaml(Path("~/.config/openstack/clouds.yaml").expanduser(), entry)
    announce(settings, password, clouds)
    try:
        yield
    finally:
        for name, service in reversed(list(runtime.services.items())):
            log.info("stopping %s", name)
            with contextlib.suppress(Exception):
                await service.stop()
        runtime.engine.dispose()
        log.info("kumo stopped")


def announce(settings: Settings, password: str, clouds: Path) -> None:
    base = settings.base_url
    lines = [
        f"kumo is up at {base}",
        f"  identity  {base}/identity/v3",
        f"  image     {base}/image",
        f"  compute   {base}/compute/v2.1",
        f"  network   {base}/network",
        "  admin credentials: user admin, project admin, password " + password,
        f"  clouds.yaml: {clouds} (cloud 'kumo')",
        f"  try: OS_CLIENT_CONFIG_FILE={clouds} openstack --os-cloud kumo image list",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
