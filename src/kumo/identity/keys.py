"""Keys every API process and agent must agree on, kept in the database.

A key is created by whichever process asks first; a second process racing it (two
`kumo api` starting at once) inserts nothing and reads the winner's key, so no key
ever lives only in one process's memory.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from kumo.identity.models import Secret


def shared_key(session: Session, name: str, generate: Callable[[], str]) -> str:
    """The key called `name`, created with `generate()` if no process has made it yet."""
    row = session.get(Secret, name)
    if row is not None:
        return row.value
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    session.execute(insert(Secret).values(name=name, value=generate())
                    .on_conflict_do_nothing(index_elements=["name"]))
    row = session.get(Secret, name, populate_existing=True)
    assert row is not None
    return row.value


def update_key(session: Session, name: str, value: str) -> None:
    """Set the key `name` to `value` (a configured value wins over a generated one)."""
    if shared_key(session, name, lambda: value) != value:
        row = session.get(Secret, name)
        assert row is not None
        row.value = value
