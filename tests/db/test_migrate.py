"""Alembic migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import inspect

from kumo.db.engine import make_engine
from kumo.db.migrate import include_name, upgrade
from kumo.db.models import load_all


def test_upgrade_matches_the_models_and_is_repeatable(empty_database_url: str) -> None:
    engine = make_engine(empty_database_url)
    upgrade(engine)
    upgrade(engine)  # a second start finds nothing to do
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"include_name": include_name})
        differences = compare_metadata(context, load_all().metadata)
    assert differences == []
    tables = set(inspect(engine).get_table_names())
    assert {"images", "servers", "users", "alembic_version"} <= tables
    engine.dispose()
