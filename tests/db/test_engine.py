"""Database URLs: what users write, what kumo runs on, and what it refuses."""

from __future__ import annotations

import pytest
from sqlalchemy.engine import make_url

from kumo.db.engine import DatabaseURLError, is_postgresql, libpq_url, make_engine, sqlalchemy_url


@pytest.mark.parametrize("url", ["postgresql://kumo:pw@db.lan/kumo",
                                 "postgres://kumo:pw@db.lan/kumo",
                                 "postgresql+psycopg://kumo:pw@db.lan/kumo"])
def test_postgres_urls_use_psycopg_3(url: str) -> None:
    assert sqlalchemy_url(url) == "postgresql+psycopg://kumo:pw@db.lan/kumo"
    assert libpq_url(url) == "postgresql://kumo:pw@db.lan/kumo"
    assert is_postgresql(url)


def test_unix_socket_urls_keep_their_host_parameter() -> None:
    url = make_url(sqlalchemy_url("postgresql://kumo@/kumo?host=/run/kumo-pg"))
    assert url.drivername == "postgresql+psycopg" and url.query["host"] == "/run/kumo-pg"


def test_sqlite_is_left_as_it_is() -> None:
    assert sqlalchemy_url("sqlite:////var/lib/kumo/kumo.db") == "sqlite:////var/lib/kumo/kumo.db"
    assert not is_postgresql("sqlite:///x.db")


@pytest.mark.parametrize("url", ["mysql://root@db/kumo", "not a url", "oracle://x"])
def test_other_databases_are_refused_with_what_kumo_runs_on(url: str) -> None:
    with pytest.raises(DatabaseURLError, match=r"SQLite|not a database URL"):
        make_engine(url)


def test_engine_reaches_the_test_database(database_url: str) -> None:
    engine = make_engine(database_url or "sqlite://")
    try:
        with engine.connect() as connection:
            assert connection.exec_driver_sql("SELECT 1").scalar() == 1
        assert engine.dialect.name in ("sqlite", "postgresql")
    finally:
        engine.dispose()
