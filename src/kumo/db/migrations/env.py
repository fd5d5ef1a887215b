"""Alembic environment: the engine comes from kumo (config.attributes['engine'])."""

from alembic import context

from kumo.db.migrate import include_name
from kumo.db.models import load_all

target_metadata = load_all().metadata
engine = context.config.attributes["engine"]

with engine.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        include_name=include_name,
    )
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
