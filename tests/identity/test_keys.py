"""Shared keys: created once, the same for every process, even when two race."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy.orm import sessionmaker

from kumo.db.engine import make_engine, session_scope
from kumo.identity.keys import shared_key, update_key
from kumo.runtime import Runtime


def test_a_key_is_made_once_and_read_back(runtime: Runtime) -> None:
    with session_scope(runtime.sessions) as session:
        first = shared_key(session, "k", lambda: "one")
    with session_scope(runtime.sessions) as session:
        assert shared_key(session, "k", lambda: "two") == first == "one"
        update_key(session, "k", "three")
    with session_scope(runtime.sessions) as session:
        assert shared_key(session, "k", lambda: "four") == "three"


def test_processes_racing_to_make_a_key_agree(runtime: Runtime) -> None:
    """Eight 'processes' (engines of their own) ask at once: one key wins, all see it."""
    barrier = threading.Barrier(8)
    engines = [make_engine(runtime.settings.db_url) for _ in range(8)]

    def ask(index: int) -> str:
        sessions = sessionmaker(engines[index], expire_on_commit=False)
        barrier.wait()
        with session_scope(sessions) as session:
            return shared_key(session, "raced", lambda: f"key-{index}")

    try:
        with ThreadPoolExecutor(8) as pool:
            keys = set(pool.map(ask, range(8)))
    finally:
        for engine in engines:
            engine.dispose()
    assert len(keys) == 1
