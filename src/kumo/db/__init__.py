"""Database: SQLAlchemy 2 models (one module per part) and Alembic migrations."""

from kumo.db.base import Base, utcnow
from kumo.db.engine import make_engine, session_scope

__all__ = ["Base", "make_engine", "session_scope", "utcnow"]
