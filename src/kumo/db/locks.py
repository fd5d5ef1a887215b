"""Locks that span processes: PostgreSQL advisory locks, keyed by a name.

Several API processes and agents share one PostgreSQL; a session-level advisory lock
is held by a connection and released by the server when that connection ends, so a
process that dies drops its locks at once: no lease to expire, no stale row to clean.
SQLite is one process's database (`kumo up`): there the lock is the process itself.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text


def lock_key(name: str) -> int:
    """A stable signed 64-bit key for `name` (advisory locks take a bigint)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def _shared(engine: Engine) -> bool:
    return engine.dialect.name == "postgresql"


@contextmanager
def held(engine: Engine, name: str) -> Iterator[None]:
    """Hold the lock `name` (waiting for it) until the block ends."""
    if not _shared(engine):
        yield
        return
    key = lock_key(name)
    with engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
        connection.commit()
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            connection.commit()


def is_held(engine: Engine, name: str) -> bool:
    """Whether some connection (in any process) holds the lock `name` right now."""
    if not _shared(engine):
        return False
    key = lock_key(name)
    with engine.connect() as connection:
        got = connection.scalar(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})
        if got:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
        connection.commit()
    return not got
