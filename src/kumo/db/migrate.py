"""Bring a database to the newest schema with Alembic."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).parent / "migrations"


def include_name(name: str | None, type_: str, _parents: object) -> bool:
    """procrastinate's tables are its own (created from its schema.sql, not our models)."""
    return not (type_ == "table" and (name or "").startswith("procrastinate_"))


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def upgrade(engine: Engine) -> None:
    """Run every migration not yet applied (creates the schema on a new database)."""
    command.upgrade(alembic_config(engine), "head")
