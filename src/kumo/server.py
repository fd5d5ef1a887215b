"""`kumo up`: every API, the compute agent and the metadata service in one process."""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import shlex
import signal
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

import sqlalchemy.exc
import uvicorn
import yaml
from sqlalchemy.orm import Session

from kumo.config import Settings, load_settings
from kumo.db.engine import DatabaseURLError, session_scope, sqlalchemy_url
from kumo.db.locks import held
from kumo.runtime import STARTUP_LOCK, Runtime, build_runtime

log = logging.getLogger("kumo")
ADMIN_PASSWORD_KEY = "admin_password"


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


def shared_admin_password(session: Session, settings: Settings) -> str:
    """The admin password every API process agrees on.

    On SQLite (one process) it is `admin_password()`. On PostgreSQL several processes
    with their own data directories bootstrap the same admin: the password is kept
    in the database (beside the token key, which is worth as much), set from
    `admin_password` when a process is configured with one, else generated once.
    """
    if session.get_bind().dialect.name != "postgresql":
        return admin_password(settings)
    from kumo.identity.bootstrap import generate_password
    from kumo.identity.keys import shared_key, update_key

    if settings.admin_password:
        update_key(session, ADMIN_PASSWORD_KEY, settings.admin_password)
        return settings.admin_password
    return shared_key(session, ADMIN_PASSWORD_KEY, generate_password)


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


class CloudsYamlError(Exception):
    """An existing clouds.yaml kumo would merge into is not one it can safely rewrite."""


def openrc(settings: Settings, password: str) -> str:
    """devstack-style `openrc`: OS_* variables for clients without clouds.yaml (glance)."""
    values = {
        "OS_AUTH_URL": f"{settings.base_url}/identity/v3",
        "OS_USERNAME": "admin",
        "OS_PASSWORD": password,
        "OS_PROJECT_NAME": "admin",
        "OS_USER_DOMAIN_NAME": "Default",
        "OS_PROJECT_DOMAIN_NAME": "Default",
        "OS_REGION_NAME": settings.region,
        "OS_IDENTITY_API_VERSION": "3",
        "OS_INTERFACE": "public",
    }
    lines = ["# Written by kumo up: `source` it for glance, nova and other OS_* clients."]
    lines += [f"export {key}={shlex.quote(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def write_clouds_yaml(path: Path, entry: dict[str, Any]) -> None:
    """Set the `kumo` cloud in a clouds.yaml, keeping every other cloud in it.

    A file that is not valid YAML, or not shaped like a clouds.yaml, is left
    untouched (CloudsYamlError): rewriting it would lose the user's other clouds.
    """
    document: dict[str, Any] = {}
    if path.exists():
        try:
            loaded = yaml.safe_load(path.read_text())
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise CloudsYamlError(f"{path}: cannot read it as YAML ({exc})") from None
        if loaded is not None and not isinstance(loaded, dict):
            raise CloudsYamlError(f"{path}: expected a mapping with a 'clouds' key")
        document = loaded or {}
    clouds = document.setdefault("clouds", {})
    if clouds is None:
        clouds = document["clouds"] = {}
    if not isinstance(clouds, dict):
        raise CloudsYamlError(f"{path}: 'clouds' is not a mapping")
    clouds["kumo"] = entry
    write_private(path, yaml.safe_dump(document, sort_keys=False))


def prepare(settings: Settings, role: str = "up") -> tuple[Runtime, str]:
    """Build the runtime, recover from a crash, make sure the admin exists.

    `role` is `up` (everything), `api` or `agent` (kumo.agent.wiring); the last two
    share their state through PostgreSQL and need it.
    """
    from kumo.identity.bootstrap import bootstrap
    from kumo.image.metadefs.service import load_default_catalog
    from kumo.image.recovery import recover

    runtime = build_runtime(settings)
    shared = runtime.engine.dialect.name == "postgresql"
    if role != "up" and not shared:
        runtime.engine.dispose()
        raise SystemExit(f"kumo {role}: needs a PostgreSQL database shared with the other "
                         "processes (--database postgresql://...); SQLite is `kumo up`'s own")
    with held(runtime.engine, STARTUP_LOCK):
        with session_scope(runtime.sessions) as session:
            password = shared_admin_password(session, settings)
            if role != "agent":
                bootstrap(session, password)
                load_default_catalog(session)
        if role != "agent":
            recover(runtime)
            from kumo.network.bootstrap import ensure_external_network

            with session_scope(runtime.sessions) as session:
                ensure_external_network(session, settings.network)
            from kumo.image.imports import importer_of

            # Image import tasks (recovered at start) run where the image API runs;
            # staged data is in this process's DATA/staging (docs/image.md).
            importer_of(runtime)
        if shared:
            from kumo.agent.wiring import register_scaled

            register_scaled(runtime, role)
        else:
            from kumo.compute.service import register as register_compute
            from kumo.network.agent import register as register_network

            register_network(runtime)
            register_compute(runtime)
        if role == "up":
            # Volumes are files in this process's data directory: Block Storage runs
            # in `kumo up` only (docs/scale-out.md), after the hypervisor it attaches with.
            from kumo.volume.service import register as register_volume

            register_volume(runtime)
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
    database: str | None = None,
    role: str = "up",
    listen: str | None = None,
    agent_host: str | None = None,
) -> None:
    """Run `kumo up`, `kumo api` or (role `agent`) `kumo agent` until SIGTERM or Ctrl-C."""
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
    settings.database_url = database or settings.database_url
    settings.agent.listen = listen or settings.agent.listen
    settings.agent.host = agent_host or settings.agent.host
    try:
        sqlalchemy_url(settings.db_url)
    except DatabaseURLError as exc:
        raise SystemExit(f"kumo: --database: {exc}") from None
    if not 0 <= settings.port <= 65535:
        raise SystemExit(f"kumo: port {settings.port} is not between 0 and 65535")
    # Held until this process ends: one `kumo up`/`kumo agent` per data directory.
    _lock = _hold_data_dir(settings) if role in ("up", "agent") else None
    if role == "agent":
        address, _, agent_port = settings.agent.listen.rpartition(":")
        if not agent_port.isdigit():
            raise SystemExit(f"kumo: [agent] listen: expected ADDRESS:PORT, got "
                             f"{settings.agent.listen!r}")
        sock = bind(address.strip("[]") or "0.0.0.0", int(agent_port))
    else:
        sock = bind(settings.host, settings.port)
        settings.port = sock.getsockname()[1]
    try:
        runtime, password = prepare(settings, role)
    except OSError as exc:
        sock.close()
        raise SystemExit(f"kumo: cannot use data directory {settings.data_dir}: {exc}") from None
    except sqlalchemy.exc.OperationalError as exc:
        sock.close()
        raise SystemExit(f"kumo: cannot use the database: {exc.orig}") from None
    except ConfigError as exc:
        sock.close()
        raise SystemExit(f"kumo: {exc}") from None
    if role == "agent":
        from kumo.agent.wiring import agent_app_for

        app = agent_app_for(runtime, sock)
    else:
        app = create_app(runtime)
        if "agent" in runtime.services:  # kumo up on PostgreSQL: this host's agent link
            from kumo.agent.wiring import mount_agent_link

            mount_agent_link(runtime, app)
        app.router.lifespan_context = lambda _app: lifespan(runtime, password,
                                                           merge_user_clouds, role)
    config = uvicorn.Config(
        app, http="httptools", loop="uvloop", log_level="warning", access_log=False,
        timeout_graceful_shutdown=10,
    )
    server = uvicorn.Server(config)
    with _exit_quietly_on_signals():
        # Server.run() honours `loop="uvloop"` (asyncio.run would not).
        server.run(sockets=[sock])
    if not server.started:
        raise SystemExit("kumo: start-up failed; see the messages above")


def _hold_data_dir(settings: Settings) -> IO[str]:
    from kumo.datadir import DataDirError, hold

    try:
        return hold(settings.data_dir)
    except DataDirError as exc:
        raise SystemExit(f"kumo: {exc}") from None


@contextlib.contextmanager
def _exit_quietly_on_signals() -> Iterator[None]:
    """Make SIGTERM and Ctrl-C end `kumo up` with status 0 after a graceful stop.

    uvicorn handles both signals while it serves, then re-raises the one it got
    against the handlers it found: with Python's defaults that is death by SIGTERM
    (status 143) or a KeyboardInterrupt traceback. Handlers that do nothing turn
    that re-raise into a clean return.
    """
    previous = {sig: signal.signal(sig, _ignore) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _ignore(_sig: int, _frame: object) -> None:
    pass


@contextlib.asynccontextmanager
async def lifespan(runtime: Runtime, password: str, merge: bool,
                   role: str = "up") -> AsyncIterator[None]:
    settings = runtime.settings
    await start_services(runtime)
    clouds = settings.data_dir / "clouds.yaml"
    entry = cloud_entry(settings, password)
    try:
        write_clouds_yaml(clouds, entry)
    except CloudsYamlError as exc:
        # The data dir's clouds.yaml is kumo's own: replace a damaged one.
        log.warning("replacing %s", exc)
        write_private(clouds, yaml.safe_dump({"clouds": {"kumo": entry}}, sort_keys=False))
    if merge:
        user_clouds = Path("~/.config/openstack/clouds.yaml").expanduser()
        try:
            write_clouds_yaml(user_clouds, entry)
        except (CloudsYamlError, OSError) as exc:
            log.warning("not adding cloud 'kumo' to your clouds.yaml: %s", exc)
    write_private(settings.data_dir / "openrc", openrc(settings, password))
    keep_startup_objects_out_of_gc()
    announce(settings, password, clouds, role)
    try:
        yield
    finally:
        await stop_services(runtime)


def keep_startup_objects_out_of_gc() -> None:
    """Spare every later full garbage collection the objects start-up made.

    Modules, SQLAlchemy's mappers and compiled statements and the apps live as long as
    the process, yet a full (oldest generation) collection walks them all: some 160,000
    objects, 60-95 ms with the GIL held, stalling every request in flight (the tail of
    bench/login_storm.py). Frozen, they are never walked; a full collection then takes
    2-3 ms. Collect first, so that no garbage start-up left is frozen with them.
    """
    gc.collect()
    gc.freeze()


async def start_services(runtime: Runtime) -> None:
    for name, service in runtime.services.items():
        log.info("starting %s", name)
        await service.start()


async def stop_services(runtime: Runtime) -> None:
    for name, service in reversed(list(runtime.services.items())):
        log.info("stopping %s", name)
        with contextlib.suppress(Exception):
            await service.stop()
    runtime.engine.dispose()
    log.info("kumo stopped")


def announce(settings: Settings, password: str, clouds: Path, role: str = "up") -> None:
    base = settings.base_url
    lines = [
        f"kumo is up at {base}" + (" (API process)" if role == "api" else ""),
        f"  identity  {base}/identity/v3",
        f"  image     {base}/image",
        f"  compute   {base}/compute/v2.1",
        f"  network   {base}/network",
        f"  volume    {base}/volume/v3",
        f"  dashboard {base}/ (log in as admin), consoles {base}/console",
        "  admin credentials: user admin, project admin, password " + password,
        f"  clouds.yaml: {clouds} (cloud 'kumo'); OS_* variables: {clouds.with_name('openrc')}",
        f"  try: OS_CLIENT_CONFIG_FILE={clouds} openstack --os-cloud kumo image list",
        "Press Ctrl-C to stop.",
    ]
    print("\n".join(lines), flush=True)
