"""Advisory locks across processes (PostgreSQL); SQLite's one process needs none."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

from kumo.db.engine import make_engine
from kumo.db.locks import held, is_held, lock_key


@pytest.fixture
def engines(database_url: str) -> Iterator[tuple[Engine, Engine]]:
    if not database_url:
        pytest.skip("locks span processes on PostgreSQL only (pytest --database=postgresql)")
    first, second = make_engine(database_url), make_engine(database_url)
    yield first, second
    first.dispose()
    second.dispose()


def test_keys_are_stable_and_distinct() -> None:
    assert lock_key("image-upload:a") == lock_key("image-upload:a")
    assert lock_key("image-upload:a") != lock_key("image-upload:b")
    assert -(2**63) <= lock_key("x") < 2**63


def test_sqlite_locks_are_the_process_itself() -> None:
    engine = make_engine("sqlite://")
    with held(engine, "x"):
        assert not is_held(engine, "x")
    engine.dispose()


def test_a_held_lock_is_seen_from_another_process_and_waited_for(
        engines: tuple[Engine, Engine]) -> None:
    first, second = engines
    order: list[str] = []
    with held(first, "startup"):
        assert is_held(second, "startup") and not is_held(second, "other")

        def wait() -> None:
            with held(second, "startup"):
                order.append("second")

        waiter = threading.Thread(target=wait)
        waiter.start()
        time.sleep(0.3)
        order.append("first done")
    waiter.join(10)
    assert order == ["first done", "second"]
    assert not is_held(first, "startup")


def test_a_dead_holder_releases_its_locks(engines: tuple[Engine, Engine]) -> None:
    first, second = engines
    connection = first.connect()
    connection.exec_driver_sql(f"SELECT pg_advisory_lock({lock_key('upload')})")
    assert is_held(second, "upload")
    connection.invalidate()  # the connection drops, as when a process is killed
    connection.close()
    deadline = time.monotonic() + 5
    while is_held(second, "upload") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not is_held(second, "upload")
