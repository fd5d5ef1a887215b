"""Imports every part's models so `Base.metadata` knows all tables (for Alembic)."""

import importlib

from kumo.db.base import Base

PARTS_WITH_MODELS = ("identity", "image", "image.metadefs", "compute", "network", "console",
                     "volume", "agent")


def load_all() -> type[Base]:
    for part in PARTS_WITH_MODELS:
        try:
            importlib.import_module(f"kumo.{part}.models")
        except ModuleNotFoundError as exc:
            if exc.name != f"kumo.{part}.models":
                raise
    return Base
