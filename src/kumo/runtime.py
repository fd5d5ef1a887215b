"""Everything a running kumo holds: settings, database, store, and the running parts.

One `Runtime` is built by `kumo up` (or by tests) and hung on the Starlette app as
`app.state.runtime`; handlers reach the parts' services through it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from kumo.config import Settings
from kumo.db.engine import make_engine
from kumo.db.locks import held
from kumo.db.migrate import upgrade

if TYPE_CHECKING:
    from kumo.store.base import ImageStore


# Held while a process migrates the database and seeds what must exist once (the
# admin, roles, default flavors): API processes and agents may start together.
STARTUP_LOCK = "kumo-startup"


@dataclass
class Runtime:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    store: ImageStore
    # Parts that run in the background (compute agent, metadata service, cache
    # manager) register themselves here by name; `kumo up` starts and stops them.
    services: dict[str, Any] = field(default_factory=dict)


def build_runtime(settings: Settings) -> Runtime:
    """Create the data directory, migrate the database, open the store."""
    from kumo.identity.passwords import set_rounds
    from kumo.store import build_store

    set_rounds(settings.identity.password_hash_rounds)
    for folder in (settings.data_dir, settings.images_dir, settings.run_dir):
        folder.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    with held(engine, STARTUP_LOCK):  # two processes starting at once migrate once
        upgrade(engine)
    # Handlers that judge a host's heartbeat read service_down_time from their session.
    sessions = sessionmaker(engine, expire_on_commit=False,
                            info={"service_down_time": settings.agent.service_down_time})
    return Runtime(
        settings=settings,
        engine=engine,
        sessions=sessions,
        store=build_store(settings),
    )


def runtime_of(app_state: Any) -> Runtime:
    runtime = app_state.runtime
    assert isinstance(runtime, Runtime)
    return runtime
