"""Engines and sessions: SQLite (WAL) by default, PostgreSQL by URL."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

# What users write (libpq's and psql's habit) -> the driver kumo ships (psycopg 3).
_POSTGRES_SCHEMES = ("postgresql", "postgres", "postgresql+psycopg")


class DatabaseURLError(ValueError):
    """A database URL kumo cannot use."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()


def sqlalchemy_url(url: str) -> str:
    """`url` with the driver kumo uses: `postgresql://` and `postgres://` mean psycopg 3.

    Anything but SQLite and PostgreSQL is refused with a message that says so.
    """
    try:
        parsed = make_url(url)
    except Exception:
        raise DatabaseURLError(f"not a database URL: {url!r}") from None
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        return url
    if parsed.drivername in _POSTGRES_SCHEMES:
        return parsed.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    raise DatabaseURLError(
        f"kumo runs on SQLite (sqlite:///PATH) or PostgreSQL (postgresql://...), "
        f"not {parsed.drivername!r}"
    )


def libpq_url(url: str) -> str:
    """The same PostgreSQL database as a plain libpq URL (for psycopg and procrastinate)."""
    parsed = make_url(sqlalchemy_url(url))
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


def is_postgresql(url: str) -> bool:
    return make_url(sqlalchemy_url(url)).get_backend_name() == "postgresql"


def make_engine(url: str) -> Engine:
    """An engine for `url`; SQLite gets WAL, foreign keys and a busy timeout."""
    url = sqlalchemy_url(url)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    # Several API processes and agents share one server: keep each one's pool modest,
    # and re-check connections a restarted PostgreSQL may have dropped.
    return create_engine(url, pool_pre_ping=True, pool_size=5, max_overflow=10)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
